package format

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/vmvault/vmvault/infra/vault/storage"
)

// SealJSON is obj as the sealed object at key.
func SealJSON(k *Keys, key string, obj any) ([]byte, error) {
	data, err := json.Marshal(obj)
	if err != nil {
		return nil, err
	}
	return k.Seal(nil, data, []byte(key)), nil
}

// GetSealed reads the sealed JSON object at key into obj: every reader of
// sealed objects (the repository, the index's loads) goes through it.
func GetSealed(ctx context.Context, be storage.Backend, k *Keys, key string, obj any) error {
	sealed, err := be.Get(ctx, key)
	if err != nil {
		return fmt.Errorf("get %s: %w", key, err)
	}
	data, err := k.Open(nil, sealed, []byte(key))
	if err != nil {
		return fmt.Errorf("%s in %s: %w", key, be.Location(), err)
	}
	if err := json.Unmarshal(data, obj); err != nil {
		return fmt.Errorf("%s in %s: %w: %v", key, be.Location(), ErrCorrupt, err)
	}
	return nil
}
