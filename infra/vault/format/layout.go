package format

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// The layout: every kind of object a vault stores, its key and its
// properties, in one table. Every reader and writer builds and parses keys
// through it (restic's FileType and Handle are the model); no other file
// spells a key prefix.

// Kind is a kind of vault object.
type Kind uint8

// The kinds, in the order the table lists them.
const (
	KindConfig        Kind = iota + 1 // "config": format, keys, settings
	KindPack                          // packs/<2 hex>/<pack id>: blobs and a sealed header
	KindIndex                         // index/<bucket>/<ms>-<pack id>: a pack's blobs
	KindRecoveryPoint                 // recoverypoints/<vm>/<id>: a manifest
	KindTombstone                     // deleted/<vm>/<id>: a soft-deleted point
	KindCheckpoint                    // checkpoints/<32 hex>: a backup in progress
	KindGCState                       // gc/candidates, gc/last
	KindDeletionLog                   // gc/deleted/<16 hex seq>: packs a sweep deletes
	KindReplication                   // replication/missing, replication/last (on a secondary)
	KindQuarantine                    // quarantine/<pack id>: a pack that failed verification
	KindClaim                         // claims/<vm>/<id>: an undelete or purge of a point under way
	KindRecord                        // <kind>/<name>: every key outside the prefixes above
)

// Stage orders replication: a stage is copied only after every earlier one
// (data before what references it).
type Stage uint8

// Replication stages.
const (
	StagePacks Stage = iota
	StageIndex
	StageRecords
	StageTombstones
	StageRecoveryPoints
	NumStages
)

var stageNames = [NumStages]string{"packs", "index", "records", "tombstones", "recovery points"}

// String is the stage's name in replication progress.
func (s Stage) String() string { return stageNames[s] }

// Props are the properties of a kind.
type Props struct {
	Kind Kind
	// Name is the kind's name in messages.
	Name string
	// Key is the object's key when the kind is one object (the config);
	// otherwise Prefix starts every key of the kind.
	Key    string
	Prefix string
	// Mutable objects are overwritten in place; the others are written once
	// (replication skips an immutable object the secondary has at the same
	// size, and compares mutable ones byte for byte).
	Mutable bool
	// Sealed objects are encrypted and authenticated under the vault's key,
	// bound to their key (the config is not: it carries its own MAC).
	Sealed bool
	// Replicated kinds are copied to a secondary, in Stage order.
	Replicated bool
	Stage      Stage
	// Locked objects are written under S3 Object Lock when the vault is
	// immutable with object lock.
	Locked bool
	// DeletedBy names who may delete objects of the kind.
	DeletedBy string
}

// layout is the table. The config is replicated first, on its own.
var layout = []Props{
	{Kind: KindConfig, Name: "config", Key: "config", Mutable: true,
		Replicated: true, Stage: StageRecords, DeletedBy: "nobody"},
	{Kind: KindPack, Name: "pack", Prefix: "packs/", Sealed: true,
		Replicated: true, Stage: StagePacks, Locked: true, DeletedBy: "gc sweep"},
	{Kind: KindIndex, Name: "index object", Prefix: "index/", Sealed: true,
		Replicated: true, Stage: StageIndex, Locked: true, DeletedBy: "gc sweep; repair (of a missing pack)"},
	{Kind: KindRecoveryPoint, Name: "recovery point", Prefix: "recoverypoints/", Sealed: true,
		Replicated: true, Stage: StageRecoveryPoints, Locked: true, DeletedBy: "soft delete, after its tombstone"},
	{Kind: KindTombstone, Name: "tombstone", Prefix: "deleted/", Sealed: true,
		Replicated: true, Stage: StageTombstones, DeletedBy: "undelete; purge"},
	{Kind: KindCheckpoint, Name: "checkpoint", Prefix: "checkpoints/", Mutable: true, Sealed: true,
		DeletedBy: "the backup that wrote it; gc sweep"},
	{Kind: KindGCState, Name: "gc state", Prefix: "gc/", Mutable: true, Sealed: true, DeletedBy: "nobody"},
	{Kind: KindDeletionLog, Name: "gc deletion log", Prefix: "gc/deleted/", Sealed: true, DeletedBy: "nobody"},
	{Kind: KindReplication, Name: "replication state", Prefix: "replication/", Mutable: true,
		DeletedBy: "nobody"},
	// A quarantined pack is out of dedup on every worker; the note is
	// this vault's finding, not copied: the secondary's pack may be sound.
	{Kind: KindQuarantine, Name: "quarantine note", Prefix: "quarantine/", Sealed: true,
		DeletedBy: "gc sweep, after its pack; repair (of a missing pack)"},
	// A claim makes an undelete and a purge of the same point exclusive
	// (written with PutIfAbsent); this vault's business, not copied.
	{Kind: KindClaim, Name: "claim", Prefix: "claims/", Sealed: true,
		DeletedBy: "the undelete or purge that wrote it; a later one, once stale"},
	{Kind: KindRecord, Name: "record", Mutable: true, Sealed: true,
		Replicated: true, Stage: StageRecords, DeletedBy: "DeleteRecord"},
}

// Kinds is the table, one entry per kind.
func Kinds() []Props { return append([]Props(nil), layout...) }

// Props returns the kind's properties.
func (k Kind) Props() Props { return layout[k-1] }

// Prefix starts every key of the kind ("" for the config and records).
func (k Kind) Prefix() string { return layout[k-1].Prefix }

func (k Kind) String() string { return layout[k-1].Name }

// Handle names one object: its kind and its name below the kind's prefix
// (for a record "<kind>/<name>", for the config "").
type Handle struct {
	Kind Kind
	Name string
}

// Key is the object's storage key.
func (h Handle) Key() string {
	p := h.Kind.Props()
	if p.Key != "" {
		return p.Key
	}
	return p.Prefix + h.Name
}

// ParseKey returns the handle of a storage key: the kind whose key or
// longest prefix it has, and a record otherwise.
func ParseKey(key string) Handle {
	best := Handle{Kind: KindRecord, Name: key}
	n := -1
	for _, p := range layout {
		switch {
		case p.Key != "" && key == p.Key:
			return Handle{Kind: p.Kind}
		case p.Prefix != "" && len(p.Prefix) > n && strings.HasPrefix(key, p.Prefix):
			best, n = Handle{Kind: p.Kind, Name: key[len(p.Prefix):]}, len(p.Prefix)
		}
	}
	return best
}

// KindOf is the kind of a storage key.
func KindOf(key string) Kind { return ParseKey(key).Kind }

// Lockable keys are what object lock protects: the data and the manifests
// (not tombstones, records, checkpoints or GC state, which change).
func Lockable(key string) bool { return KindOf(key).Props().Locked }

// The fixed objects of the kinds that hold a few named ones.
var (
	ConfigKey          = Handle{Kind: KindConfig}.Key()
	GCCandidatesKey    = Handle{KindGCState, "candidates"}.Key()
	GCLastKey          = Handle{KindGCState, "last"}.Key()
	ReplicationMissing = Handle{KindReplication, "missing"}.Key()
	ReplicationLast    = Handle{KindReplication, "last"}.Key()
)

// PackKey is the key of a pack: its id's first byte as a directory.
func PackKey(pack ID) string {
	h := pack.String()
	return Handle{KindPack, h[:2] + "/" + h}.Key()
}

// RecoveryPointKey is the key of the manifest of vm's point id.
func RecoveryPointKey(vm, id string) string { return Handle{KindRecoveryPoint, vm + "/" + id}.Key() }

// TombstoneKey is the key of the tombstone of vm's point id.
func TombstoneKey(vm, id string) string { return Handle{KindTombstone, vm + "/" + id}.Key() }

// ClaimKey is the key of the claim on vm's point id.
func ClaimKey(vm, id string) string { return Handle{KindClaim, vm + "/" + id}.Key() }

// VMPrefix is the prefix of kind's objects of vm (every VM's when vm is "").
func VMPrefix(kind Kind, vm string) string {
	if vm == "" {
		return kind.Prefix()
	}
	return kind.Prefix() + vm + "/"
}

// Index object keys: index/<bucket>/<ms>-<pack id>, ms the writer's clock
// in Unix milliseconds as 12 hex digits and bucket its first 6 (about 4.7
// hours), so the names sort by time.
const (
	indexMsDigits = 12
	indexBucket   = 6 // leading digits of ms that name the bucket
)

// IndexKeyAt names the index object of pack written at t.
func IndexKeyAt(pack ID, t time.Time) string {
	return IndexKeyFloor(t.UnixMilli()) + "-" + pack.String()
}

// IndexKeyFloor sorts before every index object written at ms or later,
// and after every one written earlier.
func IndexKeyFloor(ms int64) string {
	h := fmt.Sprintf("%0*x", indexMsDigits, max(ms, 0))
	return Handle{KindIndex, h[:indexBucket] + "/" + h}.Key()
}

// ParseIndexKey returns the pack an index object key names and when it was
// written; ok is false for keys that are not index objects.
func ParseIndexKey(key string) (pack ID, ms int64, ok bool) {
	rest, found := strings.CutPrefix(key, KindIndex.Prefix())
	if !found || len(rest) != indexBucket+1+indexMsDigits+1+2*len(pack) || rest[indexBucket] != '/' {
		return ID{}, 0, false
	}
	bucket, rest := rest[:indexBucket], rest[indexBucket+1:]
	if rest[indexMsDigits] != '-' || !strings.HasPrefix(rest, bucket) {
		return ID{}, 0, false
	}
	ms, err := strconv.ParseInt(rest[:indexMsDigits], 16, 64)
	if err != nil || ms < 0 {
		return ID{}, 0, false
	}
	pack, err = ParseID(rest[indexMsDigits+1:])
	if err != nil {
		return ID{}, 0, false
	}
	return pack, ms, true
}

// NewCheckpointKey names the checkpoint object of one backup attempt.
func NewCheckpointKey() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	return Handle{KindCheckpoint, hex.EncodeToString(b[:])}.Key()
}

// IsCheckpointKey tells a checkpoint object's key from anything else a
// payload may name: only those are read or deleted on its word.
func IsCheckpointKey(key string) bool {
	h, ok := strings.CutPrefix(key, KindCheckpoint.Prefix())
	if !ok || len(h) != 32 {
		return false
	}
	_, err := hex.DecodeString(h)
	return err == nil
}

// DeletionLogKey is the key of GC's deletion log seq.
func DeletionLogKey(seq uint64) string {
	return Handle{KindDeletionLog, fmt.Sprintf("%016x", seq)}.Key()
}

// ParseDeletionLogKey returns the seq of a deletion log's key.
func ParseDeletionLogKey(key string) (uint64, bool) {
	rest, ok := strings.CutPrefix(key, KindDeletionLog.Prefix())
	if !ok || len(rest) != 16 {
		return 0, false
	}
	seq, err := strconv.ParseUint(rest, 16, 64)
	return seq, err == nil && seq > 0
}

// recordKind is a lower-case word; ReservedKind says which are taken.
var recordKind = regexp.MustCompile(`^[a-z][a-z0-9-]{0,31}$`)

// ReservedKind says whether kind names the top level of one of the table's
// own kinds: a record must never land among packs, indexes, manifests or
// replication state.
func ReservedKind(kind string) bool {
	for _, p := range layout {
		top, _, _ := strings.Cut(p.Key+p.Prefix, "/")
		if top != "" && top == kind {
			return true
		}
	}
	return false
}

// ErrBadRecordName is a record kind or name no record can have.
var ErrBadRecordName = errors.New("invalid record name")

type recordNameError struct{ msg string }

func (e recordNameError) Error() string        { return e.msg }
func (e recordNameError) Is(target error) bool { return target == ErrBadRecordName }

// CheckRecordName refuses, without any I/O, a kind or name no record can
// have (the error wraps ErrBadRecordName).
func CheckRecordName(kind, name string) error {
	if !recordKind.MatchString(kind) || ReservedKind(kind) {
		return recordNameError{fmt.Sprintf("invalid record kind %q", kind)}
	}
	// No slashes (one level below the kind), no dot names (the fs backend's
	// temp files), nothing a terminal or a listing would mangle.
	if name == "" || strings.HasPrefix(name, ".") || strings.ContainsAny(name, "/\\\x00\n\r\t ") || len(name) > 255 {
		return recordNameError{fmt.Sprintf("invalid %s record name %q", kind, name)}
	}
	return nil
}

// RecordKey is the key of the record kind/name.
func RecordKey(kind, name string) (string, error) {
	if err := CheckRecordName(kind, name); err != nil {
		return "", err
	}
	return Handle{KindRecord, kind + "/" + name}.Key(), nil
}

// RecordPrefix is the prefix of the records of kind.
func RecordPrefix(kind string) (string, error) {
	if _, err := RecordKey(kind, "x"); err != nil {
		return "", err
	}
	return kind + "/", nil
}
