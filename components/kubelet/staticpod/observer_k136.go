//go:build k8s136

package staticpod

import (
	"time"

	corev1 "k8s.io/api/core/v1"
)

// noObserver: the v1.36 kubelet's observer takes no logger.
type noObserver struct{}

func (noObserver) ObservedPodOnWatch(*corev1.Pod, time.Time) {}
