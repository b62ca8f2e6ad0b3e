package s3

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

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

// rangeTotal is the object size of a Content-Range header ("bytes a-b/size").
func rangeTotal(cr string) (int64, bool) {
	_, total, ok := strings.Cut(cr, "/")
	if !ok || total == "*" {
		return 0, false
	}
	n, err := strconv.ParseInt(total, 10, 64)
	return n, err == nil && n >= 0
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
	var nsb *types.NoSuchBucket
	var api smithy.APIError
	if errors.As(err, &nsb) || (errors.As(err, &api) && api.ErrorCode() == "NoSuchBucket") {
		return fmt.Errorf("%s %s: %w", op, key, err)
	}
	if isNotFound(err) {
		return fmt.Errorf("%s %s: %w", op, key, storage.ErrNotFound)
	}
	return fmt.Errorf("%s %s: %w", op, key, err)
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
	out, err := b.client.GetObject(ctx, &awss3.GetObjectInput{
		Bucket: aws.String(b.bucket),
		Key:    b.key(key),
	})
	if err != nil {
		return nil, translate("get", key, err)
	}
	defer out.Body.Close()
	data, err := readBody(out.Body, aws.ToInt64(out.ContentLength))
	if err != nil {
		return nil, fmt.Errorf("get %s: read body: %w", key, err)
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
	out, err := b.client.GetObject(ctx, &awss3.GetObjectInput{
		Bucket: aws.String(b.bucket),
		Key:    b.key(key),
		Range:  aws.String(fmt.Sprintf("bytes=%d-%d", offset, offset+length-1)),
	})
	if err != nil {
		if isInvalidRange(err) { // starts at or after the end
			return nil, fmt.Errorf("get %s range %d+%d: %w", key, offset, length, storage.ErrRange)
		}
		return nil, translate("get", key, err)
	}
	defer out.Body.Close()
	// S3 answers a range that runs past the end with what there is, and
	// says how long the object is: short because the object is, or a body
	// cut on the way (readBody's exact length check, retryable).
	if size, ok := rangeTotal(aws.ToString(out.ContentRange)); ok && offset+length > size {
		return nil, fmt.Errorf("get %s range %d+%d: the object has %d bytes: %w", key, offset, length, size, storage.ErrRange)
	}
	data, err := readBody(out.Body, length)
	if err != nil {
		return nil, fmt.Errorf("get %s range %d+%d: read body: %w", key, offset, length, err)
	}
	return data, nil
}

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
		return nil, fmt.Errorf("body longer than %d bytes", size)
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
