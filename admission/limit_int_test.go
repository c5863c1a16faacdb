package admission_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/tcr-assistant/tcr-assistant/admission"
	"github.com/tcr-assistant/tcr-assistant/internal/testenv"
)

// TestAReviewOverTheBoundIsRefusedAtOnce shows what a client sees when the webhook is over its
// bound of concurrent reviews: with failurePolicy Fail, the API server refuses the request at
// once, naming the bound; once a slot is free, the same request is admitted.
func TestAReviewOverTheBoundIsRefusedAtOnce(t *testing.T) {
	opts := testOptions(t, "limit")
	opts.Reviews = admission.NewLimiter(1)
	port := testenv.FreePort(t)
	installWebhookConfiguration(t, opts.WebhookConfigurationName, port)
	p := startWebhook(t, port, opts)
	p.waitReady(t)
	waitServing(t, opts.WebhookConfigurationName)

	release, ok := opts.Reviews.TryAcquire()
	require.True(t, ok)
	ctx := context.Background()
	start := time.Now()
	err := env.Client.Create(ctx, goodIPS("over-the-bound"), client.DryRunAll)
	took := time.Since(start)
	require.Error(t, err)
	assert.True(t, apierrors.IsInternalError(err), "%v", err)
	assert.Equal(t, `Internal error occurred: failed calling webhook "vimagepullsecret.tcr.tencentcloudcr.com": failed to call webhook: `+
		admission.TooManyReviewsMessage(1), err.Error())
	assert.Less(t, took, 4*time.Second, "refused at once, not retried until the webhook's timeout of 5s: took %v", took)

	release()
	require.NoError(t, env.Client.Create(ctx, goodIPS("over-the-bound"), client.DryRunAll))
}
