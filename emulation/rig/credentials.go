package rig

import (
	"encoding/json"
	"fmt"
)

// RotateDatabricksSecret does what an operator rotating the service principal's OAuth secret does:
// Databricks gets the new secret and revokes the old one (with the tokens issued under it), and the
// local Secrets Manager gets the new value. Functions already warm still hold the old one.
func (r *Rig) RotateDatabricksSecret(secret string) error {
	if r.Fake == nil {
		return fmt.Errorf("rig: no Databricks fake to rotate the secret in")
	}
	b, err := json.Marshal(map[string]string{"client_id": ClientID, "client_secret": secret})
	if err != nil {
		return err
	}
	r.Fake.RotateClientSecret(secret)
	r.AWS.PutSecret(r.secretARN(), string(b))
	return nil
}

func (r *Rig) secretARN() string {
	return fmt.Sprintf("arn:aws:secretsmanager:%s:%s:secret:databricks-cmk-rotator/service-principal", r.Region, AWSAccount)
}
