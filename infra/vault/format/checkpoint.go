package format

import (
	"encoding/json"
	"fmt"
)

// CheckpointObject is the content of a checkpoint object: the leaves done,
// and the disk they belong to. A backup attempt rewrites its own object as
// it goes; leaves only ever append, so an object may list more leaves than
// a checkpoint naming it uses (a crash between the PUT and the heartbeat),
// never different ones.
//
// Why a sealed object and not a tree blob (a partial root) in a pack: a
// checkpoint is garbage as soon as the backup finishes; as an object it is
// one DELETE, as a blob it would stay in a pack until GC repacks it. It is
// rewritten in place, so an attempt leaves at most one object behind.
type CheckpointObject struct {
	Disk        string `json:"disk"`
	Size        int64  `json:"size"`
	BlockSize   int64  `json:"block_size"`
	LeafEntries int64  `json:"leaf_entries"`
	// Leaves are the leaf ids, concatenated (base64 in JSON: 43 bytes a
	// leaf, against 67 as hex strings).
	Leaves []byte `json:"leaves"`
}

// DecodeCheckpointObject decodes a checkpoint object's plaintext.
func DecodeCheckpointObject(data []byte) (CheckpointObject, error) {
	var o CheckpointObject
	if err := json.Unmarshal(data, &o); err != nil {
		return o, fmt.Errorf("%w: checkpoint: %v", ErrCorrupt, err)
	}
	if len(o.Leaves)%len(ID{}) != 0 {
		return o, fmt.Errorf("%w: checkpoint lists %d bytes of leaves", ErrCorrupt, len(o.Leaves))
	}
	return o, nil
}

// LeafIDs are the leaves the object lists.
func (o CheckpointObject) LeafIDs() []ID {
	ids := make([]ID, len(o.Leaves)/len(ID{}))
	for i := range ids {
		copy(ids[i][:], o.Leaves[i*len(ID{}):])
	}
	return ids
}
