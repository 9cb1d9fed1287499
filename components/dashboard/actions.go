package dashboard

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// The actions: each is one API call made with the user's token, so the
// API server decides; a refusal is shown with the API's status and text.

// backTo is the workloads page of a namespace.
func backTo(ns string) string { return "/workloads?ns=" + url.QueryEscape(ns) }

func (s *Server) scale(w http.ResponseWriter, r *http.Request, se *session) {
	kind, ns, name := r.PathValue("kind"), r.PathValue("ns"), r.PathValue("name")
	replicas, err := strconv.ParseInt(r.PostFormValue("replicas"), 10, 32)
	if err != nil || replicas < 0 || replicas > 1000 {
		s.fail(w, r, se, http.StatusBadRequest, fmt.Sprintf("replicas %q: want a whole number from 0 to 1000", r.PostFormValue("replicas")))
		return
	}
	patch, _ := json.Marshal(map[string]any{"spec": map[string]any{"replicas": replicas}})
	ctx := r.Context()
	apps := se.clients.Kube.AppsV1()
	switch kind {
	case "deployments":
		_, err = apps.Deployments(ns).Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{})
	case "statefulsets":
		_, err = apps.StatefulSets(ns).Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{})
	default:
		s.fail(w, r, se, http.StatusNotFound, "only deployments and statefulsets scale, not "+kind)
		return
	}
	if err != nil {
		s.apiFail(w, r, se, fmt.Sprintf("scale %s %s/%s to %d", kind, ns, name, replicas), err)
		return
	}
	s.opts.Log.Info("scaled", "user", se.user, "kind", kind, "namespace", ns, "name", name, "replicas", replicas)
	http.Redirect(w, r, backTo(ns), http.StatusSeeOther)
}

// restart is `kubectl rollout restart`: it stamps the pod template with
// kubectl's restartedAt annotation, and the controller rolls the pods.
func (s *Server) restart(w http.ResponseWriter, r *http.Request, se *session) {
	kind, ns, name := r.PathValue("kind"), r.PathValue("ns"), r.PathValue("name")
	patch, _ := json.Marshal(map[string]any{"spec": map[string]any{"template": map[string]any{"metadata": map[string]any{
		"annotations": map[string]string{"kubectl.kubernetes.io/restartedAt": s.opts.Now().Format(time.RFC3339)}}}}})
	ctx := r.Context()
	apps := se.clients.Kube.AppsV1()
	var err error
	switch kind {
	case "deployments":
		_, err = apps.Deployments(ns).Patch(ctx, name, types.StrategicMergePatchType, patch, metav1.PatchOptions{})
	case "statefulsets":
		_, err = apps.StatefulSets(ns).Patch(ctx, name, types.StrategicMergePatchType, patch, metav1.PatchOptions{})
	case "daemonsets":
		_, err = apps.DaemonSets(ns).Patch(ctx, name, types.StrategicMergePatchType, patch, metav1.PatchOptions{})
	default:
		s.fail(w, r, se, http.StatusNotFound, "only deployments, statefulsets and daemonsets restart, not "+kind)
		return
	}
	if err != nil {
		s.apiFail(w, r, se, fmt.Sprintf("restart %s %s/%s", kind, ns, name), err)
		return
	}
	s.opts.Log.Info("restarted", "user", se.user, "kind", kind, "namespace", ns, "name", name)
	http.Redirect(w, r, backTo(ns), http.StatusSeeOther)
}

func (s *Server) deletePod(w http.ResponseWriter, r *http.Request, se *session) {
	ns, name := r.PathValue("ns"), r.PathValue("name")
	if err := se.clients.Kube.CoreV1().Pods(ns).Delete(r.Context(), name, metav1.DeleteOptions{}); err != nil {
		s.apiFail(w, r, se, fmt.Sprintf("delete pod %s/%s", ns, name), err)
		return
	}
	s.opts.Log.Info("deleted pod", "user", se.user, "namespace", ns, "name", name)
	http.Redirect(w, r, backTo(ns), http.StatusSeeOther)
}

// cordon marks a node (un)schedulable, as `kubectl cordon` does.
func (s *Server) cordon(unschedulable bool) userHandler {
	return func(w http.ResponseWriter, r *http.Request, se *session) {
		name := r.PathValue("name")
		patch, _ := json.Marshal(map[string]any{"spec": map[string]any{"unschedulable": unschedulable}})
		if _, err := se.clients.Kube.CoreV1().Nodes().Patch(r.Context(), name, types.StrategicMergePatchType, patch, metav1.PatchOptions{}); err != nil {
			what := "uncordon"
			if unschedulable {
				what = "cordon"
			}
			s.apiFail(w, r, se, what+" node "+name, err)
			return
		}
		s.opts.Log.Info("node schedulable", "user", se.user, "node", name, "unschedulable", unschedulable)
		http.Redirect(w, r, "/", http.StatusSeeOther)
	}
}
