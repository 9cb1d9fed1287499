// Package duty runs the node service's long-running duties: the jobs it does
// besides running containerd and the kubelet (the pod network agent,
// certificate renewal, scheduled etcd snapshots, ...). Each duty is a value
// in the list the supervisor builds; the Manager starts them in order, each
// in its own goroutine, restarts one that fails with a growing delay, stops
// them in reverse order, and publishes each one's health (node.DutyState)
// for `kubeforge node status`.
package duty

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/kubeforge/kubeforge/components/node"
)

// Duty is one long-running job.
type Duty struct {
	// Name identifies the duty in `node status` and the logs ("pod-network").
	Name string
	// Run works until ctx ends, reporting its health through h. It returns
	// nil when ctx ends; an error when it cannot go on, and the Manager
	// runs it again after a delay (RestartDelay, doubled up to
	// MaxRestartDelay). A panic counts as an error.
	Run func(ctx context.Context, h *Health) error
}

// Health is how a running duty says how it is. The last call wins.
type Health struct {
	name    string
	publish func(node.DutyState)

	mu    sync.Mutex
	state node.DutyState
}

// OK says the duty works; msg says what it did last ("next snapshot at ...").
func (h *Health) OK(format string, args ...any) { h.set(node.DutyOK, fmt.Sprintf(format, args...)) }

// Warn says the duty works but something needs an operator's attention
// (a certificate in its renewal window that cannot be renewed).
func (h *Health) Warn(format string, args ...any) {
	h.set(node.DutyWarning, fmt.Sprintf(format, args...))
}

// Fail says the duty's last attempt failed and it will try again.
func (h *Health) Fail(err error) { h.set(node.DutyFailing, err.Error()) }

// Disabled says the duty does not apply to this node or is turned off,
// and why. Run may then return nil at once or wait for ctx, looking again
// now and then: saying the same again publishes nothing.
func (h *Health) Disabled(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if st := h.State(); st.Status == node.DutyDisabled && st.Message == msg {
		return
	}
	h.set(node.DutyDisabled, msg)
}

func (h *Health) set(status, msg string) {
	h.mu.Lock()
	now := time.Now().UTC().Truncate(time.Second)
	if h.state.Status != status {
		h.state.Since = now
	}
	h.state.Name, h.state.Status, h.state.Message, h.state.Updated = h.name, status, msg, now
	st := h.state
	h.mu.Unlock()
	if h.publish != nil {
		h.publish(st)
	}
}

// State is the duty's last reported state.
func (h *Health) State() node.DutyState {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.state
}

// Options configure a Manager.
type Options struct {
	// Publish receives every change of a duty's state.
	Publish func(node.DutyState)
	Log     *slog.Logger
	// RestartDelay is the first delay before a failed duty runs again
	// (10 s by default); MaxRestartDelay caps its doubling (5 min).
	RestartDelay    time.Duration
	MaxRestartDelay time.Duration
}

// Manager runs a list of duties (lifecycle: Start, then Stop).
type Manager struct {
	o      Options
	duties []Duty

	mu      sync.Mutex
	cancels []context.CancelFunc
	done    []chan struct{}
	health  []*Health
	stopped bool
}

// NewManager returns a Manager for duties, in start order.
func NewManager(o Options, duties ...Duty) *Manager {
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.RestartDelay <= 0 {
		o.RestartDelay = 10 * time.Second
	}
	if o.MaxRestartDelay < o.RestartDelay {
		o.MaxRestartDelay = max(5*time.Minute, o.RestartDelay)
	}
	return &Manager{o: o, duties: duties}
}

// Start starts every duty, in order, and returns once each runs. Calling it
// again (or after Stop) does nothing.
func (m *Manager) Start(ctx context.Context) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.stopped || m.cancels != nil {
		return
	}
	m.cancels = []context.CancelFunc{}
	for _, d := range m.duties {
		h := &Health{name: d.Name, publish: m.o.Publish}
		h.set(node.DutyStarting, "")
		dctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		m.cancels, m.done, m.health = append(m.cancels, cancel), append(m.done, done), append(m.health, h)
		go m.loop(dctx, d, h, done)
	}
}

func (m *Manager) loop(ctx context.Context, d Duty, h *Health, done chan struct{}) {
	defer close(done)
	log := m.o.Log.With("duty", d.Name)
	delay := m.o.RestartDelay
	for {
		began := time.Now()
		err := runSafely(ctx, d, h)
		if ctx.Err() != nil {
			h.set(node.DutyStopped, "")
			return
		}
		if err == nil {
			if st := h.State().Status; st != node.DutyDisabled {
				h.set(node.DutyStopped, "finished")
			}
			log.Info("duty finished")
			return
		}
		if time.Since(began) > 4*delay { // it ran a good while: start over
			delay = m.o.RestartDelay
		}
		h.Fail(fmt.Errorf("%v (runs again in %s)", err, delay))
		log.Error("duty failed", "err", err, "retryIn", delay)
		select {
		case <-ctx.Done():
			h.set(node.DutyStopped, "")
			return
		case <-time.After(delay):
		}
		delay = min(2*delay, m.o.MaxRestartDelay)
	}
}

func runSafely(ctx context.Context, d Duty, h *Health) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v", r)
		}
	}()
	return d.Run(ctx, h)
}

// Stop stops the duties in reverse order, each waited for. It is safe to
// call twice and before Start.
func (m *Manager) Stop() {
	m.mu.Lock()
	m.stopped = true
	cancels, done := m.cancels, m.done
	m.cancels, m.done = nil, nil
	m.mu.Unlock()
	for i := len(cancels) - 1; i >= 0; i-- {
		cancels[i]()
		<-done[i]
	}
}

// States is every duty's last reported state, in start order.
func (m *Manager) States() []node.DutyState {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]node.DutyState, len(m.health))
	for i, h := range m.health {
		out[i] = h.State()
	}
	return out
}
