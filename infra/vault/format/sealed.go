package format

import "encoding/json"

// SealJSON is obj as the sealed object at key.
func SealJSON(k *Keys, key string, obj any) ([]byte, error) {
	data, err := json.Marshal(obj)
	if err != nil {
		return nil, err
	}
	return k.Seal(nil, data, []byte(key)), nil
}
