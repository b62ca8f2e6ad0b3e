// Package diskfile writes raw disk image files the way every vmvault restore
// does: beside the target, then into place by a rename. It is the target of
// a disks-only restore (disks written as files into a directory), and the
// images platform stages its disks with it.
//
// Stage creates a staging file next to the target, dir/.<name>.restore-<h>,
// where h is a hash of the restore's stage id (the job id, the same on every
// retry), so that a staging file is never a disk, and a retry of the same
// restore finds and reopens it as it was (Staged.Resumed) instead of starting
// over. The file is created sparse at its full size: bytes never written
// read as zero and take no space, so all-zero blocks, which the vault never
// stores, stay holes. Writes beyond the size are refused.
//
// Commit syncs the staging file and renames it to dir/<name>, then syncs the
// directory. An existing target is refused unless forced, and a forced one is
// first locked the way QEMU locks images it writes (imagelock), so an image a
// VM is using is never replaced. CommitAll commits several files of one
// stage under a journal (.commit.restore-<h>), so a retry after a crash
// finishes what the crashed attempt began instead of refusing the files it
// renamed already. Abort removes a stage's staging files and journal. The
// target is never opened for writing, so a restore that fails before its
// commit leaves it as it was.
//
// Nothing here follows a symlink: dir must be a directory itself, not a
// symlink to one, and names are single path elements opened relative to it
// with O_NOFOLLOW.
package diskfile
