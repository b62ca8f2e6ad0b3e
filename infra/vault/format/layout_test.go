package format

import (
	"strings"
	"testing"
	"time"
)

func TestParseKeyKinds(t *testing.T) {
	var pack ID
	pack[0], pack[31] = 0xab, 0x01
	for _, c := range []struct {
		key  string
		kind Kind
	}{
		{"config", KindConfig},
		{PackKey(pack), KindPack},
		{IndexKeyAt(pack, time.UnixMilli(1700000000000)), KindIndex},
		{RecoveryPointKey("vm1", "rp1"), KindRecoveryPoint},
		{TombstoneKey("vm1", "rp1"), KindTombstone},
		{NewCheckpointKey(), KindCheckpoint},
		{GCCandidatesKey, KindGCState},
		{GCLastKey, KindGCState},
		{DeletionLogKey(7), KindDeletionLog},
		{ReplicationMissing, KindReplication},
		{ReplicationLast, KindReplication},
		{QuarantineKey(pack), KindQuarantine},
		{"policies/gold", KindRecord},
		{"configs/x", KindRecord}, // not the config: a record kind that starts like it
		{"packsx/y", KindRecord},  // prefixes end with a slash
		{"gc/other", KindGCState}, // everything under gc/ is GC's
		{"gc/deleted/x", KindDeletionLog},
	} {
		if got := KindOf(c.key); got != c.kind {
			t.Errorf("KindOf(%q) = %v, want %v", c.key, got, c.kind)
		}
		if h := ParseKey(c.key); h.Key() != c.key {
			t.Errorf("ParseKey(%q).Key() = %q", c.key, h.Key())
		}
	}
	if p, ms, ok := ParseIndexKey(IndexKeyAt(pack, time.UnixMilli(1700000000000))); !ok || p != pack || ms != 1700000000000 {
		t.Errorf("ParseIndexKey: %v %d %v", p, ms, ok)
	}
	if seq, ok := ParseDeletionLogKey(DeletionLogKey(42)); !ok || seq != 42 {
		t.Errorf("ParseDeletionLogKey: %d %v", seq, ok)
	}
	if !IsCheckpointKey(NewCheckpointKey()) || IsCheckpointKey(RecoveryPointKey("a", "b")) {
		t.Error("IsCheckpointKey")
	}
}

// The properties the vault relied on before they were one table.
func TestLayoutProperties(t *testing.T) {
	for _, p := range Kinds() {
		if p.Kind.Props().Kind != p.Kind {
			t.Fatalf("table out of order at %v", p.Kind)
		}
		if (p.Key == "") == (p.Prefix == "") && p.Kind != KindRecord {
			t.Errorf("%v: needs exactly one of Key and Prefix", p.Kind)
		}
		if p.Prefix != "" && !strings.HasSuffix(p.Prefix, "/") {
			t.Errorf("%v: prefix %q does not end with a slash", p.Kind, p.Prefix)
		}
	}
	locked := map[Kind]bool{KindPack: true, KindIndex: true, KindRecoveryPoint: true}
	immutable := map[Kind]bool{KindPack: true, KindIndex: true, KindRecoveryPoint: true, KindTombstone: true, KindDeletionLog: true, KindQuarantine: true, KindClaim: true}
	unreplicated := map[Kind]bool{KindCheckpoint: true, KindGCState: true, KindDeletionLog: true, KindReplication: true, KindQuarantine: true, KindClaim: true}
	for _, p := range Kinds() {
		if p.Locked != locked[p.Kind] {
			t.Errorf("%v: Locked %v", p.Kind, p.Locked)
		}
		if p.Mutable == immutable[p.Kind] {
			t.Errorf("%v: Mutable %v", p.Kind, p.Mutable)
		}
		if p.Replicated == unreplicated[p.Kind] {
			t.Errorf("%v: Replicated %v", p.Kind, p.Replicated)
		}
	}
	if !(KindPack.Props().Stage < KindIndex.Props().Stage && KindIndex.Props().Stage < KindRecord.Props().Stage &&
		KindRecord.Props().Stage < KindTombstone.Props().Stage && KindTombstone.Props().Stage < KindRecoveryPoint.Props().Stage) {
		t.Error("replication stages out of order: data, index, records, tombstones, manifests")
	}
}

// A record must never land on an object of the table's own kinds: every
// kind's top-level name is refused, replication's included.
func TestRecordKindsReserved(t *testing.T) {
	for _, p := range Kinds() {
		top, _, _ := strings.Cut(p.Key+p.Prefix, "/")
		if top == "" {
			continue
		}
		if _, err := RecordKey(top, "x"); err == nil {
			t.Errorf("RecordKey(%q) accepted: it collides with %v", top, p.Kind)
		}
		if _, err := RecordPrefix(top); err == nil {
			t.Errorf("RecordPrefix(%q) accepted", top)
		}
	}
	for _, kind := range []string{"replication", "gc", "deleted", "config", "packs", "index", "recoverypoints", "checkpoints"} {
		if _, err := RecordKey(kind, "last"); err == nil {
			t.Errorf("RecordKey(%q, last) accepted", kind)
		}
	}
	key, err := RecordKey("policies", "gold")
	if err != nil || KindOf(key) != KindRecord {
		t.Errorf("RecordKey(policies, gold) = %q, %v (kind %v)", key, err, KindOf(key))
	}
}
