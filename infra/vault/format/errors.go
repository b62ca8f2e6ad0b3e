package format

import "errors"

// The vault's sentinel errors. They are returned wrapped, naming what failed
// and where; callers test for them with errors.Is.
var (
	// ErrNoVault is returned by Open when the storage holds no vault config.
	ErrNoVault = errors.New("no vault")

	// ErrVaultExists is returned by Init when the storage already holds a vault.
	ErrVaultExists = errors.New("vault already exists")

	// ErrMissing is returned when data a recovery point or tree references is
	// not in the vault (the message names the blob and where it was needed).
	ErrMissing = errors.New("missing data")

	// ErrWrongKey is returned when the passphrase or key file does not open
	// the vault.
	ErrWrongKey = errors.New("wrong vault key")

	// ErrCorrupt is returned when stored data fails authentication, does not
	// decode, or does not hash to its id (the message says what and where).
	ErrCorrupt = errors.New("corrupt data")

	// ErrNoRecoveryPoint is returned when a recovery point does not exist.
	ErrNoRecoveryPoint = errors.New("recovery point not found")
)

// ErrFormatVersion is returned by Open when the vault's format is not the
// one this build reads.
var ErrFormatVersion = errors.New("unsupported vault format version")

// ErrNoRecord is returned (wrapped) when a record does not exist.
var ErrNoRecord = errors.New("record not found")
