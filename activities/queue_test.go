package activities

import "testing"

func TestHostQueue(t *testing.T) {
	if HostQueue("h1") != "vmvault-host-h1" {
		t.Fatal(HostQueue("h1"))
	}
}
