package s3

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"

	"github.com/vmvault/vmvault/infra/vault/storage"
)

// Config says where a vault lives on S3 and how to reach it.
type Config struct {
	// Endpoint is the S3 API URL, e.g. "http://127.0.0.1:9000"; empty means AWS.
	Endpoint string
	// Region defaults to the AWS environment's region, else "us-east-1".
	Region string
	Bucket string
	// Prefix is prepended to every key; a missing trailing "/" is added.
	Prefix string
	// PathStyle addresses buckets as endpoint/bucket instead of
	// bucket.endpoint; MinIO and most self-hosted servers want it.
	PathStyle bool
	// AccessKeyID and SecretAccessKey are static credentials (tests); when
	// both are empty the SDK's default chain is used: the environment
	// (including AWS_SESSION_TOKEN of temporary credentials), the shared
	// config and credentials files (AWS_PROFILE), web identity, and the
	// instance or container role.
	AccessKeyID     string
	SecretAccessKey string
}

type s3Backend struct {
	client *awss3.Client
	bucket string
	prefix string
}

var (
	_ storage.Backend     = (*s3Backend)(nil)
	_ storage.Provisioner = (*s3Backend)(nil)
)

// New returns a backend on cfg.Bucket. It does not contact the server; see
// EnsureBucket to create the bucket.
func New(ctx context.Context, cfg Config) (storage.Backend, error) {
	client, err := newClient(ctx, cfg)
	if err != nil {
		return nil, err
	}
	prefix := cfg.Prefix
	if prefix != "" && !strings.HasSuffix(prefix, "/") {
		prefix += "/"
	}
	return &s3Backend{client: client, bucket: cfg.Bucket, prefix: prefix}, nil
}

func newClient(ctx context.Context, cfg Config) (*awss3.Client, error) {
	if cfg.Bucket == "" {
		return nil, errors.New("open s3 backend: bucket is empty")
	}
	if (cfg.AccessKeyID == "") != (cfg.SecretAccessKey == "") {
		return nil, errors.New("open s3 backend: give both access key id and secret access key, or neither")
	}
	var opts []func(*config.LoadOptions) error
	if cfg.Region != "" {
		opts = append(opts, config.WithRegion(cfg.Region))
	}
	if cfg.AccessKeyID != "" {
		opts = append(opts, config.WithCredentialsProvider(
			credentials.NewStaticCredentialsProvider(cfg.AccessKeyID, cfg.SecretAccessKey, "")))
	}
	awsCfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("open s3 backend: load aws config: %w", err)
	}
	if awsCfg.Region == "" {
		awsCfg.Region = "us-east-1"
	}
	return awss3.NewFromConfig(awsCfg, func(o *awss3.Options) {
		if cfg.Endpoint != "" {
			o.BaseEndpoint = aws.String(cfg.Endpoint)
		}
		o.UsePathStyle = cfg.PathStyle
	}), nil
}

// Provision creates the bucket if it does not exist yet (vault init).
func (b *s3Backend) Provision(ctx context.Context) error {
	return ensureBucket(ctx, b.client, b.bucket)
}

// EnsureBucket creates cfg.Bucket if it does not exist yet (tests).
func EnsureBucket(ctx context.Context, cfg Config) error {
	client, err := newClient(ctx, cfg)
	if err != nil {
		return err
	}
	return ensureBucket(ctx, client, cfg.Bucket)
}

func ensureBucket(ctx context.Context, client *awss3.Client, bucket string) error {
	_, err := client.HeadBucket(ctx, &awss3.HeadBucketInput{Bucket: aws.String(bucket)})
	if err == nil {
		return nil
	}
	if !isNotFound(err) {
		return fmt.Errorf("ensure bucket %s: %w", bucket, err)
	}
	in := &awss3.CreateBucketInput{Bucket: aws.String(bucket)}
	// us-east-1 is the one region that rejects an explicit location constraint.
	if r := client.Options().Region; r != "" && r != "us-east-1" {
		in.CreateBucketConfiguration = &types.CreateBucketConfiguration{
			LocationConstraint: types.BucketLocationConstraint(r),
		}
	}
	if _, err := client.CreateBucket(ctx, in); err != nil {
		var owned *types.BucketAlreadyOwnedByYou
		if errors.As(err, &owned) { // created concurrently by us
			return nil
		}
		return fmt.Errorf("create bucket %s: %w", bucket, err)
	}
	return nil
}

func (b *s3Backend) Location() string {
	return "s3://" + b.bucket + "/" + strings.TrimSuffix(b.prefix, "/")
}

func (b *s3Backend) key(key string) *string { return aws.String(b.prefix + key) }

// isNotFound reports whether err means the object (or, for HeadBucket, the
// bucket) does not exist.
// isInvalidRange says whether S3 refused a range that starts past the
// object's end (416 InvalidRange).
func isInvalidRange(err error) bool {
	var api smithy.APIError
	if errors.As(err, &api) && api.ErrorCode() == "InvalidRange" {
		return true
	}
	var re *awshttp.ResponseError
	return errors.As(err, &re) && re.HTTPStatusCode() == http.StatusRequestedRangeNotSatisfiable
}

func isNotFound(err error) bool {
	var nsk *types.NoSuchKey
	var nf *types.NotFound
	var nsb *types.NoSuchBucket
	if errors.As(err, &nsk) || errors.As(err, &nf) || errors.As(err, &nsb) {
		return true
	}
	var api smithy.APIError
	if errors.As(err, &api) {
		switch api.ErrorCode() {
		case "NoSuchKey", "NotFound", "NoSuchBucket":
			return true
		}
	}
	var re *awshttp.ResponseError
	return errors.As(err, &re) && re.HTTPStatusCode() == http.StatusNotFound
}

// translate turns a missing key into storage.ErrNotFound. A missing bucket
// stays a plain error: an empty-looking vault would hide a misconfiguration.
func translate(op, key string, err error) error {
	return fmt.Errorf("%s %s: %w", op, key, notFoundAs(err))
}

func notFoundAs(err error) error {
	var nsb *types.NoSuchBucket
	var api smithy.APIError
	if errors.As(err, &nsb) || (errors.As(err, &api) && api.ErrorCode() == "NoSuchBucket") {
		return err
	}
	if isNotFound(err) {
		return storage.ErrNotFound
	}
	return err
}

func (b *s3Backend) Put(ctx context.Context, key string, data []byte) error {
	_, err := b.client.PutObject(ctx, &awss3.PutObjectInput{
		Bucket:        aws.String(b.bucket),
		Key:           b.key(key),
		Body:          bytes.NewReader(data),
		ContentLength: aws.Int64(int64(len(data))),
	})
	if err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	return nil
}

// PutIfAbsent is a conditional write (If-None-Match: *): the server refuses
// it with 412 when the key exists.
func (b *s3Backend) PutIfAbsent(ctx context.Context, key string, data []byte) error {
	_, err := b.client.PutObject(ctx, &awss3.PutObjectInput{
		Bucket:        aws.String(b.bucket),
		Key:           b.key(key),
		Body:          bytes.NewReader(data),
		ContentLength: aws.Int64(int64(len(data))),
		IfNoneMatch:   aws.String("*"),
	})
	var re *awshttp.ResponseError
	if errors.As(err, &re) && re.HTTPStatusCode() == http.StatusPreconditionFailed {
		return fmt.Errorf("put %s: %w", key, storage.ErrExists)
	}
	if err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	return nil
}

func (b *s3Backend) Get(ctx context.Context, key string) ([]byte, error) {
	in := &awss3.GetObjectInput{Bucket: aws.String(b.bucket), Key: b.key(key)}
	data, err := b.getObject(ctx, in, -1)
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", key, err)
	}
	return data, nil
}

func (b *s3Backend) GetRange(ctx context.Context, key string, offset, length int64) ([]byte, error) {
	if offset < 0 || length < 0 {
		return nil, fmt.Errorf("get %s: invalid range offset %d length %d", key, offset, length)
	}
	if length == 0 {
		// "bytes=n-(n-1)" is not a valid range; still report a missing key.
		size, err := b.Stat(ctx, key)
		if err != nil {
			return nil, err
		}
		if offset > size {
			return nil, fmt.Errorf("get %s range %d+0: beyond size %d", key, offset, size)
		}
		return []byte{}, nil
	}
	in := &awss3.GetObjectInput{
		Bucket: aws.String(b.bucket),
		Key:    b.key(key),
		Range:  aws.String(fmt.Sprintf("bytes=%d-%d", offset, offset+length-1)),
	}
	data, err := b.getObject(ctx, in, length)
	if err != nil {
		return nil, fmt.Errorf("get %s range %d+%d: %w", key, offset, length, err)
	}
	return data, nil
}

// bodyAttempts bounds how often getObject asks again for an object whose
// body broke off before its declared length. The SDK retries a request
// until its reply's headers arrive, not a body cut short after them (a
// connection reset mid-transfer, a proxy timing out): without this, one
// dropped connection failed a whole restore or vault check.
const bodyAttempts = 4

// getObject fetches in's object (or range) and reads its body: exactly want
// bytes (want < 0: the declared length). A body cut short is fetched again,
// up to bodyAttempts in all; a body of another declared length (a range
// past the end of the object) is an error at once.
func (b *s3Backend) getObject(ctx context.Context, in *awss3.GetObjectInput, want int64) ([]byte, error) {
	var lastErr error
	for attempt := range bodyAttempts {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return nil, errors.Join(lastErr, ctx.Err())
			case <-time.After(time.Duration(attempt) * 200 * time.Millisecond):
			}
		}
		out, err := b.client.GetObject(ctx, in)
		if err != nil {
			if isInvalidRange(err) { // a range that starts at or after the end
				return nil, storage.ErrRange
			}
			return nil, notFoundAs(err)
		}
		declared := aws.ToInt64(out.ContentLength)
		n := want
		if n < 0 {
			n = declared
		} else if out.ContentLength != nil && declared != want {
			// S3 answers a range that runs past the end with what there is.
			out.Body.Close()
			return nil, fmt.Errorf("object has %d bytes in that range, %d asked for: %w", declared, want, storage.ErrRange)
		}
		data, err := readBody(out.Body, n)
		out.Body.Close()
		if err == nil {
			return data, nil
		}
		lastErr = fmt.Errorf("read body (attempt %d of %d): %w", attempt+1, bodyAttempts, err)
		if ctx.Err() != nil || errors.Is(err, errBodyTooLong) {
			return nil, lastErr
		}
	}
	return nil, lastErr
}

var errBodyTooLong = errors.New("body longer than declared")

// readBody reads exactly size bytes (or all, when size is unknown) and then
// reads on to EOF, where the SDK checks the response checksum.
func readBody(r io.Reader, size int64) ([]byte, error) {
	if size <= 0 {
		return io.ReadAll(r)
	}
	buf := make([]byte, size)
	if n, err := io.ReadFull(r, buf); err != nil {
		return nil, fmt.Errorf("read %d of %d bytes: %w", n, size, err)
	}
	var probe [1]byte
	if n, err := io.ReadFull(r, probe[:]); n > 0 {
		return nil, fmt.Errorf("%w: %d bytes", errBodyTooLong, size)
	} else if !errors.Is(err, io.EOF) {
		return nil, err
	}
	return buf, nil
}

func (b *s3Backend) Stat(ctx context.Context, key string) (int64, error) {
	out, err := b.client.HeadObject(ctx, &awss3.HeadObjectInput{
		Bucket: aws.String(b.bucket),
		Key:    b.key(key),
	})
	if err != nil {
		return 0, translate("stat", key, err)
	}
	return aws.ToInt64(out.ContentLength), nil
}

func (b *s3Backend) Delete(ctx context.Context, key string) error {
	_, err := b.client.DeleteObject(ctx, &awss3.DeleteObjectInput{
		Bucket: aws.String(b.bucket),
		Key:    b.key(key),
	})
	if err != nil && !errors.Is(translate("delete", key, err), storage.ErrNotFound) {
		return fmt.Errorf("delete %s: %w", key, err)
	}
	return nil
}

func (b *s3Backend) List(ctx context.Context, prefix string, fn func(key string, size int64) error) error {
	return b.ListAfter(ctx, prefix, "", fn)
}

func (b *s3Backend) ListAfter(ctx context.Context, prefix, after string, fn func(key string, size int64) error) error {
	in := &awss3.ListObjectsV2Input{Bucket: aws.String(b.bucket), Prefix: aws.String(b.prefix + prefix)}
	if after != "" {
		in.StartAfter = aws.String(b.prefix + after)
	}
	p := awss3.NewListObjectsV2Paginator(b.client, in)
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return fmt.Errorf("list %q: %w", prefix, err)
		}
		for _, obj := range page.Contents {
			key, ok := strings.CutPrefix(aws.ToString(obj.Key), b.prefix)
			if !ok {
				continue
			}
			if err := fn(key, aws.ToInt64(obj.Size)); err != nil {
				return fmt.Errorf("list %q: %w", prefix, err)
			}
		}
	}
	return nil
}
