package proc

import "time"

// Backoff computes the delay before restarting a child that exited: it
// doubles from Initial up to Max while the child keeps dying young, and
// starts over from Initial once a run lasted at least ResetAfter.
type Backoff struct {
	Initial    time.Duration
	Max        time.Duration
	ResetAfter time.Duration

	next time.Duration
}

// DefaultBackoff is what the node service uses: quick first retries (a
// kubelet that lost a race with its config comes back at once), capped at
// the 10 s that kubeadm's kubelet unit waits between restarts.
func DefaultBackoff() Backoff {
	return Backoff{Initial: 200 * time.Millisecond, Max: 10 * time.Second, ResetAfter: 30 * time.Second}
}

// Next returns the delay before the next start, given how long the last
// run lasted.
func (b *Backoff) Next(uptime time.Duration) time.Duration {
	if b.next == 0 || (b.ResetAfter > 0 && uptime >= b.ResetAfter) {
		b.next = b.Initial
	}
	d := b.next
	b.next *= 2
	if b.Max > 0 && b.next > b.Max {
		b.next = b.Max
	}
	if b.Max > 0 && d > b.Max {
		d = b.Max
	}
	return d
}

// Reset makes the next delay Initial again.
func (b *Backoff) Reset() { b.next = 0 }
