package s3

import (
	"bytes"
	"context"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/vmvault/vmvault/infra/vault/storage"
)

var _ storage.Retainer = (*s3Backend)(nil)

// PutRetained writes the object with an Object Lock retention: the bucket
// refuses to delete this version before r.Until (a plain DELETE only adds a
// delete marker; the locked version stays readable).
func (b *s3Backend) PutRetained(ctx context.Context, key string, data []byte, r storage.Retention) error {
	mode := types.ObjectLockModeGovernance
	if r.Mode == storage.RetentionCompliance {
		mode = types.ObjectLockModeCompliance
	}
	_, err := b.client.PutObject(ctx, &awss3.PutObjectInput{
		Bucket:                    aws.String(b.bucket),
		Key:                       b.key(key),
		Body:                      bytes.NewReader(data),
		ContentLength:             aws.Int64(int64(len(data))),
		ObjectLockMode:            mode,
		ObjectLockRetainUntilDate: aws.Time(r.Until.UTC()),
		// Object Lock requires an integrity checksum on the request.
		ChecksumAlgorithm: types.ChecksumAlgorithmCrc32,
	})
	if err != nil {
		return fmt.Errorf("put %s (locked until %s): %w", key, r.Until.UTC().Format(time.RFC3339), err)
	}
	return nil
}

// RetainedUntil reads the lock of the object's current version.
func (b *s3Backend) RetainedUntil(ctx context.Context, key string) (time.Time, error) {
	out, err := b.client.HeadObject(ctx, &awss3.HeadObjectInput{Bucket: aws.String(b.bucket), Key: b.key(key)})
	if err != nil {
		return time.Time{}, translate("stat", key, err)
	}
	if out.ObjectLockRetainUntilDate == nil {
		return time.Time{}, nil
	}
	return *out.ObjectLockRetainUntilDate, nil
}

// CheckRetention fails unless the bucket has Object Lock enabled (which
// can only be chosen when the bucket is created).
func (b *s3Backend) CheckRetention(ctx context.Context) error {
	out, err := b.client.GetObjectLockConfiguration(ctx, &awss3.GetObjectLockConfigurationInput{Bucket: aws.String(b.bucket)})
	if err != nil {
		return fmt.Errorf("bucket %s: object lock configuration: %w (object lock must be enabled when the bucket is created)", b.bucket, err)
	}
	if out.ObjectLockConfiguration == nil || out.ObjectLockConfiguration.ObjectLockEnabled != types.ObjectLockEnabledEnabled {
		return fmt.Errorf("bucket %s does not have object lock enabled (it can only be enabled when the bucket is created)", b.bucket)
	}
	return nil
}
