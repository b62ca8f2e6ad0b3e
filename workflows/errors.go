package workflows

import (
	"errors"
	"fmt"

	"go.temporal.io/sdk/temporal"

	"github.com/vmvault/vmvault/activities"
)

// badRequest is a non-retryable error for a job input that can never work.
func badRequest(format string, a ...any) error {
	return temporal.NewNonRetryableApplicationError(fmt.Sprintf(format, a...), activities.ErrTypeBadRequest, nil)
}

// withCleanupError adds a failed cleanup to a job's error. errors.Join would
// hide the job error's type (the failure converter sends only the outer
// error's type, "joinError", retryable), so the type and retryability that
// callers match on are kept, and a cancelled job stays cancelled.
func withCleanupError(err, cerr error) error {
	var app *temporal.ApplicationError
	switch {
	case err == nil:
		return cerr
	case temporal.IsCanceledError(err):
		return err // the cleanup failure is logged
	case errors.As(err, &app):
		return temporal.NewApplicationErrorWithOptions(fmt.Sprintf("%s; %v", app.Message(), cerr), app.Type(),
			temporal.ApplicationErrorOptions{NonRetryable: app.NonRetryable(), Cause: err})
	default:
		return errors.Join(err, cerr)
	}
}

// rootMessage is the innermost message of an activity error, for notes.
func rootMessage(err error) string {
	var app *temporal.ApplicationError
	if errors.As(err, &app) {
		return app.Error()
	}
	return err.Error()
}
