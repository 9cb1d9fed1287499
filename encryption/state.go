package encryption

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// The rotation state lives in the cluster, in one kube-system Secret: the
// encryption configuration every control-plane node must have (the node
// duty writes it to each node's file) and the step the rotation reached.
// Only cluster administrators read it: the node authorizer gives a kubelet
// only the Secrets of its own pods, and no RBAC rule of kubeforge's names
// it. It is itself encrypted at rest with the keys it holds, so an etcd
// backup alone does not reveal them.
const (
	StateSecret    = "kubeforge-encryption-config"
	ConfigDataKey  = "encryption-config.yaml"
	StepAnnotation = "encryption.kubeforge.io/rotation-step"
	KeyAnnotation  = "encryption.kubeforge.io/rotation-key"
)

// Step is how far a rotation got. Each is recorded once its configuration
// is published; the next run first waits until every API server loaded it.
type Step string

// The steps of a rotation, in order.
const (
	// StepNone: no rotation ever ran; the nodes' files are what init made.
	StepNone Step = ""
	// StepReadKeyAdded: the new key decrypts, the old one still encrypts.
	StepReadKeyAdded Step = "read-key-added"
	// StepWriteKeySwitched: the new key encrypts, the old ones decrypt.
	StepWriteKeySwitched Step = "write-key-switched"
	// StepSecretsRewritten: every Secret is stored under the new key
	// (checked in etcd); the configuration is that of StepWriteKeySwitched.
	StepSecretsRewritten Step = "secrets-rewritten"
	// StepDone: the old keys are retired; only the new key is left.
	StepDone Step = "old-keys-retired"
)

// State is the recorded rotation.
type State struct {
	Step Step
	// Key is the name of the key being rotated in (the write key when Done).
	Key string
	// Config is the published encryption configuration file.
	Config []byte
	// ResourceVersion of the Secret it was read from or written to.
	ResourceVersion string
	// Stored says the Secret exists (SaveState then updates it).
	Stored bool
}

// Next computes the state after st's next transition, for every step but
// the rewrite of the Secrets (which changes data, not the configuration):
// from StepNone or StepDone a new rotation with newKey, from
// StepReadKeyAdded the switch of the write key, from StepSecretsRewritten
// the retirement of the old keys.
func Next(st State, newKey Provider) (State, error) {
	cfg, err := Parse(st.Config, "the published encryption configuration")
	if err != nil {
		return st, err
	}
	next := State{Key: st.Key, ResourceVersion: st.ResourceVersion, Stored: st.Stored}
	switch st.Step {
	case StepNone, StepDone:
		if newKey.Name == "" || cfg.Has(newKey.Name) {
			return st, fmt.Errorf("new key %q: empty or already in the configuration (keys: %v)", newKey.Name, cfg.KeyNames())
		}
		next.Step, next.Key = StepReadKeyAdded, newKey.Name
		next.Config = Render(AddReadKey(cfg, newKey))
	case StepReadKeyAdded:
		c, err := MakeWrite(cfg, st.Key)
		if err != nil {
			return st, err
		}
		next.Step, next.Config = StepWriteKeySwitched, Render(c)
	case StepWriteKeySwitched:
		next.Step, next.Config = StepSecretsRewritten, st.Config
	case StepSecretsRewritten:
		c, err := Retire(cfg, st.Key)
		if err != nil {
			return st, err
		}
		next.Step, next.Config = StepDone, Render(c)
	default:
		return st, fmt.Errorf("unknown rotation step %q in kube-system/%s (annotation %s)", st.Step, StateSecret, StepAnnotation)
	}
	return next, nil
}

// LoadState reads the recorded rotation; found is false when none ran.
func LoadState(ctx context.Context, c kubernetes.Interface) (st State, found bool, err error) {
	s, err := c.CoreV1().Secrets(metav1.NamespaceSystem).Get(ctx, StateSecret, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return State{}, false, nil
	}
	if err != nil {
		return State{}, false, fmt.Errorf("read kube-system/%s: %w", StateSecret, err)
	}
	st = State{Step: Step(s.Annotations[StepAnnotation]), Key: s.Annotations[KeyAnnotation],
		Config: s.Data[ConfigDataKey], ResourceVersion: s.ResourceVersion, Stored: true}
	if len(st.Config) == 0 {
		return State{}, false, fmt.Errorf("kube-system/%s has no %s: delete it and run the rotation again", StateSecret, ConfigDataKey)
	}
	return st, true, nil
}

// SaveState records st, creating the Secret or updating the version it was
// read from: a rotation run elsewhere meanwhile makes this fail with a
// conflict instead of overwriting it.
func SaveState(ctx context.Context, c kubernetes.Interface, st State) (State, error) {
	s := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: StateSecret, Namespace: metav1.NamespaceSystem, ResourceVersion: st.ResourceVersion,
			Labels:      map[string]string{"app.kubernetes.io/managed-by": "kubeforge"},
			Annotations: map[string]string{StepAnnotation: string(st.Step), KeyAnnotation: st.Key}},
		Type: corev1.SecretTypeOpaque,
		Data: map[string][]byte{ConfigDataKey: st.Config},
	}
	var out *corev1.Secret
	var err error
	if !st.Stored {
		out, err = c.CoreV1().Secrets(metav1.NamespaceSystem).Create(ctx, s, metav1.CreateOptions{})
	} else {
		out, err = c.CoreV1().Secrets(metav1.NamespaceSystem).Update(ctx, s, metav1.UpdateOptions{})
	}
	if apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err) {
		return st, fmt.Errorf("record step %s in kube-system/%s: it changed meanwhile (is another rotate-key running?): %w", st.Step, StateSecret, err)
	}
	if err != nil {
		return st, fmt.Errorf("record step %s in kube-system/%s: %w", st.Step, StateSecret, err)
	}
	st.ResourceVersion, st.Stored = out.ResourceVersion, true
	return st, nil
}
