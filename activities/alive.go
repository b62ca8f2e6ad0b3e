package activities

import (
	"context"
	"time"

	"go.temporal.io/sdk/activity"
)

// aliveEvery is how often a short step heartbeats: well inside the
// workflows' heartbeat timeout of short steps (30s).
const aliveEvery = 5 * time.Second

// alive heartbeats ctx's activity now and every aliveEvery until stop is
// called, so a step whose worker died is retried after its heartbeat
// timeout instead of its whole start-to-close timeout, and a live one is
// told of a cancel. Call it first in a short step: defer alive(ctx)().
func alive(ctx context.Context) (stop func()) {
	activity.RecordHeartbeat(ctx)
	return heartbeatEvery(ctx, aliveEvery)
}
