package awsfake

import (
	"crypto/sha256"
	"encoding/hex"
	"regexp"
	"strings"
	"time"

	"github.com/google/uuid"
)

type secret struct {
	arn       string
	name      string
	value     string
	versionID string
	created   time.Time
}

type secretsState struct {
	byName map[string]*secret
}

func newSecretsState() secretsState { return secretsState{byName: map[string]*secret{}} }

// arnSuffix is the six random characters Secrets Manager appends to a secret's name in its ARN.
var arnSuffix = regexp.MustCompile(`-[A-Za-z0-9]{6}$`)

// PutSecret stores value as the AWSCURRENT version of a secret, replacing any previous value.
// arnOrName is either a full secret ARN (kept as given) or a name (the fake mints the ARN, with a
// suffix derived from the name so it is stable across runs). The value is never logged.
func (s *Server) PutSecret(arnOrName, value string) {
	sec := &secret{value: value, versionID: uuid.NewString(), created: time.Now().UTC()}
	if strings.HasPrefix(arnOrName, "arn:") {
		sec.arn = arnOrName
		_, name, _ := strings.Cut(arnOrName, ":secret:")
		sec.name = arnSuffix.ReplaceAllString(name, "")
	} else {
		sum := sha256.Sum256([]byte(arnOrName))
		sec.name = arnOrName
		sec.arn = "arn:aws:secretsmanager:" + s.region + ":" + s.accountID + ":secret:" + arnOrName + "-" + hex.EncodeToString(sum[:3])
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.secrets.byName[sec.name] = sec
}

// findSecret accepts a name, a full ARN or a partial ARN (without the random suffix), as AWS does.
// The caller holds s.mu.
func (s *Server) findSecret(id string) *secret {
	for _, sec := range s.secrets.byName {
		if id == sec.name || id == sec.arn || id == arnSuffix.ReplaceAllString(sec.arn, "") {
			return sec
		}
	}
	return nil
}

func (s *Server) getSecretValue(body []byte) (any, *apiError) {
	var in struct {
		SecretID     string `json:"SecretId"`
		VersionID    string `json:"VersionId"`
		VersionStage string `json:"VersionStage"`
	}
	if err := decode(body, &in); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	sec := s.findSecret(in.SecretID)
	switch {
	case sec == nil:
		return nil, errBadRequest("ResourceNotFoundException", "Secrets Manager can't find the specified secret.")
	case in.VersionStage != "" && in.VersionStage != "AWSCURRENT":
		return nil, errBadRequest("ResourceNotFoundException", "Secrets Manager can't find the specified secret value for staging label: %s", in.VersionStage)
	case in.VersionID != "" && in.VersionID != sec.versionID:
		return nil, errBadRequest("ResourceNotFoundException", "Secrets Manager can't find the specified secret value for VersionId: %s", in.VersionID)
	}
	return map[string]any{
		"ARN":           sec.arn,
		"Name":          sec.name,
		"VersionId":     sec.versionID,
		"SecretString":  sec.value,
		"VersionStages": []string{"AWSCURRENT"},
		"CreatedDate":   ptrEpoch(sec.created),
	}, nil
}
