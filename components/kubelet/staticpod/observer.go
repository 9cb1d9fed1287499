//go:build !k8s136

package staticpod

import (
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/klog/v2"
)

type noObserver struct{}

func (noObserver) ObservedPodOnWatch(klog.Logger, *corev1.Pod, time.Time) {}
