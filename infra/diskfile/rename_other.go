//go:build !linux

package diskfile

import "os"

// RenameNoReplace renames old to new in dir, failing with an error wrapping
// os.ErrExist instead of replacing an existing new.
func RenameNoReplace(dir *os.File, old, new string) error {
	return renameNoReplaceByLink(dir, old, new)
}
