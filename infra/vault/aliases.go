package vault

import (
	"github.com/vmvault/vmvault/infra/vault/format"
	"github.com/vmvault/vmvault/infra/vault/index"
)

// The format's vocabulary under the names callers use (package format
// defines them).

type (
	ID            = format.ID
	Config        = format.Config
	KeyOptions    = format.KeyOptions
	Immutability  = format.Immutability
	RecoveryPoint = format.RecoveryPoint
	DiskRecord    = format.DiskRecord
	DiskStats     = format.DiskStats
	DeletedPoint  = format.DeletedPoint
	KeptSnapshot  = format.KeptSnapshot
	BackupType    = format.BackupType
	Method        = format.Method
	Root          = format.Root
	IndexProblem  = format.IndexProblem
	IndexOptions  = index.Options
	Index         = index.Index
)

const (
	BackupFull        = format.BackupFull
	BackupIncremental = format.BackupIncremental
	MethodCBT         = format.MethodCBT
	MethodChecksum    = format.MethodChecksum

	CompressionS2   = format.CompressionS2
	CompressionZstd = format.CompressionZstd
	CompressionNone = format.CompressionNone

	DefaultBlockSize   = format.DefaultBlockSize
	DefaultPackSize    = format.DefaultPackSize
	DefaultLeafEntries = format.DefaultLeafEntries
	MinKDFMemoryKiB    = format.MinKDFMemoryKiB
)

var (
	ErrNoVault         = format.ErrNoVault
	ErrVaultExists     = format.ErrVaultExists
	ErrMissing         = format.ErrMissing
	ErrWrongKey        = format.ErrWrongKey
	ErrCorrupt         = format.ErrCorrupt
	ErrNoRecoveryPoint = format.ErrNoRecoveryPoint
	ErrFormatVersion   = format.ErrFormatVersion
	ErrNoRecord        = format.ErrNoRecord
	ErrSoftDeleted     = format.ErrSoftDeleted
	ErrImmutable       = format.ErrImmutable
	ErrBadRecordName   = format.ErrBadRecordName
)

// ZeroID stands for an all-zero block, which is never stored.
var ZeroID = format.ZeroID

// ParseID parses an id's hex form.
func ParseID(s string) (ID, error) { return format.ParseID(s) }

// CheckRecordName refuses, without I/O, a record kind or name the vault
// would refuse (wrapping ErrBadRecordName).
func CheckRecordName(kind, name string) error { return format.CheckRecordName(kind, name) }

// Lockable keys are what object lock protects (format.Props.Locked).
func Lockable(key string) bool { return format.Lockable(key) }
