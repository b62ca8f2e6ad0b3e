package activities

import "testing"

func TestHostQueue(t *testing.T) {
	if HostQueue("h1") != "vmvault-host-h1" {
		t.Fatal(HostQueue("h1"))
	}
}

func TestTransferQueue(t *testing.T) {
	if TransferQueue("h1") != "vmvault-transfer-h1" || TransferQueue("h1") == HostQueue("h1") {
		t.Fatal(TransferQueue("h1"))
	}
}
