// Package storagetest is the conformance suite every storage.Backend must
// pass. Each backend's tests call Run with a constructor that returns a
// fresh, empty backend (a new directory, bucket or prefix) per call.
package storagetest
