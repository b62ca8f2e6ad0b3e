package activities

import (
	"errors"
	"syscall"

	"go.temporal.io/sdk/temporal"

	"github.com/vmvault/vmvault/infra/diskfile"
	"github.com/vmvault/vmvault/infra/platform"
	"github.com/vmvault/vmvault/infra/vault"
)

// Error types of non-retryable application errors; tests and the CLI match on them.
const (
	ErrTypeVMNotFound            = "VMNotFound"
	ErrTypeVMExists              = "VMExists"
	ErrTypeVMRunning             = "VMRunning"
	ErrTypeInvalidVM             = "InvalidVM"
	ErrTypeDiskBusy              = "DiskBusy"
	ErrTypeDiskChanged           = "DiskChanged"
	ErrTypeNotSupported          = "NotSupported"
	ErrTypeCorruptData           = "CorruptData"
	ErrTypeMissingData           = "MissingData"
	ErrTypeWrongKey              = "WrongKey"
	ErrTypeNoVault               = "NoVault"
	ErrTypeRecoveryPointNotFound = "RecoveryPointNotFound"
	ErrTypeLimitExceeded         = "LimitExceeded"
	ErrTypeBadRequest            = "BadRequest"
	ErrTypeVaultMismatch         = "VaultMismatch"
	ErrTypeTargetExists          = "TargetExists"
	ErrTypeJobLimit              = "JobLimit"
	ErrTypeAgentUnavailable      = "AgentUnavailable"
	// ErrTypeImmutable: an immutable vault refused to delete a point early.
	ErrTypeImmutable = "Immutable"
	// ErrTypeGCGraceTooShort: GC's grace period is not longer than the
	// longest limit of a running backup (CheckGCGrace).
	ErrTypeGCGraceTooShort = "GCGraceTooShort"
	// ErrTypeNoSpace: the vault's or a restore target's file system (or
	// quota) is full. Retrying writes into the same full file system for
	// the step's whole retry budget; the job fails at once, naming it.
	ErrTypeNoSpace = "NoSpace"
	// ErrTypeIndexLag is retryable: data another worker wrote is not listed yet.
	ErrTypeIndexLag = "IndexLag"
)

// NonRetryable lists the error types no retry can fix: the retry policies of
// the workflows name them.
var NonRetryable = []string{
	ErrTypeVMNotFound, ErrTypeVMExists, ErrTypeVMRunning, ErrTypeInvalidVM,
	ErrTypeDiskBusy, ErrTypeDiskChanged, ErrTypeNotSupported,
	ErrTypeCorruptData, ErrTypeMissingData, ErrTypeWrongKey, ErrTypeNoVault,
	ErrTypeRecoveryPointNotFound, ErrTypeLimitExceeded, ErrTypeBadRequest,
	ErrTypeVaultMismatch, ErrTypeTargetExists, ErrTypeAgentUnavailable,
	ErrTypeImmutable, ErrTypeNoSecondary, ErrTypeGCGraceTooShort,
	ErrTypePolicyNotFound, ErrTypeInvalidPolicy, ErrTypeNotProtected,
	ErrTypeNoSpace,
}

var classes = []struct {
	err error
	typ string
}{
	{platform.ErrVMNotFound, ErrTypeVMNotFound},
	{platform.ErrVMExists, ErrTypeVMExists},
	{platform.ErrVMRunning, ErrTypeVMRunning},
	{platform.ErrInvalidVM, ErrTypeInvalidVM},
	{platform.ErrDiskBusy, ErrTypeDiskBusy},
	{platform.ErrDiskChanged, ErrTypeDiskChanged},
	{platform.ErrNotSupported, ErrTypeNotSupported},
	{platform.ErrAgentUnavailable, ErrTypeAgentUnavailable},
	{vault.ErrWrongKey, ErrTypeWrongKey},
	{vault.ErrCorrupt, ErrTypeCorruptData},
	{vault.ErrMissing, ErrTypeMissingData},
	{vault.ErrNoVault, ErrTypeNoVault},
	{vault.ErrNoRecoveryPoint, ErrTypeRecoveryPointNotFound},
	{vault.ErrImmutable, ErrTypeImmutable},
	{diskfile.ErrExists, ErrTypeTargetExists},
	{diskfile.ErrSymlink, ErrTypeInvalidVM},
	{diskfile.ErrNotStaged, ErrTypeBadRequest},
	{syscall.ENOSPC, ErrTypeNoSpace},
	{syscall.EDQUOT, ErrTypeNoSpace},
}

// classify turns errors that retrying cannot fix into non-retryable
// application errors; others are returned as they are, to be retried.
func classify(err error) error {
	if err == nil {
		return nil
	}
	for _, c := range classes {
		if errors.Is(err, c.err) {
			return nonRetryable(err.Error(), c.typ)
		}
	}
	return err
}

// badRequest is a non-retryable error for input that can never work.
func badRequest(msg string) error { return nonRetryable(msg, ErrTypeBadRequest) }

func nonRetryable(msg, typ string) error {
	return temporal.NewNonRetryableApplicationError(msg, typ, nil)
}
