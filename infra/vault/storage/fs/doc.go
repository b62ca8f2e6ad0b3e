// Package fs is a storage.Backend on a local directory (a file:// vault).
//
// Every key is a file under the root directory; the slashes in a key are
// directories. Put writes to a temporary file in the target directory,
// fsyncs it, renames it over the key and fsyncs the directory, so a crash
// leaves either the old object, the new one, or a stray temporary file
// (named ".tmp-*", ignored by List and removed by nothing but an operator)
// — never a torn object.
package fs
