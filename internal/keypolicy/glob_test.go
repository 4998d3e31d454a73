package keypolicy

import "testing"

func TestGlobMatch(t *testing.T) {
	tests := []struct {
		name, pattern, s string
		fold, want       bool
	}{
		{"an exact name matches", "kms:Decrypt", "kms:Decrypt", false, true},
		{"case differs and folding is on", "KMS:decrypt", "kms:Decrypt", true, true},
		{"case differs and folding is off", "KMS:decrypt", "kms:Decrypt", false, false},
		{"a trailing star matches a suffix", "kms:ReEncrypt*", "kms:ReEncryptFrom", true, true},
		{"a trailing star matches nothing", "kms:GenerateDataKey*", "kms:GenerateDataKey", true, true},
		{"a star alone matches anything", "*", "kms:Encrypt", true, true},
		{"a question mark matches exactly one character", "kms:?ncrypt", "kms:Encrypt", true, true},
		{"a question mark does not match zero characters", "kms:?Encrypt", "kms:Encrypt", true, false},
		{"a star in the middle backtracks", "kms:*Key*", "kms:GenerateDataKeyPair", true, true},
		{"a prefix is not a match", "kms:Encrypt", "kms:EncryptMore", true, false},
		{"an empty pattern matches only the empty string", "", "", false, true},
		{"an empty pattern does not match text", "", "x", false, false},
		{"many stars do not blow up", "a*a*a*a*a*a*a*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := globMatch(tt.pattern, tt.s, tt.fold); got != tt.want {
				t.Errorf("globMatch(%q, %q, %v) = %v, want %v", tt.pattern, tt.s, tt.fold, got, tt.want)
			}
		})
	}
}
