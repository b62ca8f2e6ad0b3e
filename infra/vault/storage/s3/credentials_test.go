package s3

import (
	"context"
	"testing"
)

// Temporary credentials (STS, SSO, instance roles) carry a session token;
// the backend must take credentials from the SDK's default chain, not copy
// the key pair into static credentials and drop the token.
func TestDefaultChainKeepsSessionToken(t *testing.T) {
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDTEMP")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "secret")
	t.Setenv("AWS_SESSION_TOKEN", "session-token-123")
	t.Setenv("AWS_CONFIG_FILE", t.TempDir()+"/none")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", t.TempDir()+"/none")
	c, err := newClient(context.Background(), Config{Bucket: "b", Endpoint: "http://127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	creds, err := c.Options().Credentials.Retrieve(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if creds.AccessKeyID != "AKIDTEMP" || creds.SessionToken != "session-token-123" {
		t.Fatalf("credentials %q with session token %q, want the environment's temporary credentials", creds.AccessKeyID, creds.SessionToken)
	}
}
