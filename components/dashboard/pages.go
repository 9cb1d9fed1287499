package dashboard

import (
	"cmp"
	"fmt"
	"html/template"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/kubeforge/kubeforge/internal/logsearch"
	"github.com/kubeforge/kubeforge/manifests"
)

// funcs are the templates' helpers.
func funcs(now func() time.Time) template.FuncMap {
	return template.FuncMap{
		"age": func(t metav1.Time) string {
			if t.IsZero() {
				return ""
			}
			return humanDuration(now().Sub(t.Time))
		},
		"until": func(t time.Time) string {
			d := t.Sub(now())
			if d < 0 {
				return "expired " + humanDuration(-d) + " ago"
			}
			return "in " + humanDuration(d)
		},
		"date":  func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04 MST") },
		"join":  strings.Join,
		"stamp": func(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z") },
		"storage": func(l corev1.ResourceList) string {
			if q, ok := l[corev1.ResourceStorage]; ok {
				return q.String()
			}
			return ""
		},
	}
}

func humanDuration(d time.Duration) string {
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	default:
		return fmt.Sprintf("%dd", int(d.Hours()/24))
	}
}

// nodeRow is a node on the overview.
type nodeRow struct {
	Name, Status, Roles, Version, Address, OS, Runtime string
	CPU, Memory                                        string // usage / allocatable
	Unschedulable                                      bool
	Age                                                metav1.Time
}

type overviewData struct {
	Nodes         []nodeRow
	NodesError    string
	MetricsNote   string
	Certificates  []CertInfo
	CanCordon     bool
	JoinCommand   string
	ControlPlanes int
}

func (s *Server) overview(w http.ResponseWriter, r *http.Request, se *session) {
	ctx := r.Context()
	d := overviewData{JoinCommand: "kubeforge token create --print-join-command"}
	nodes, err := se.clients.Kube.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		d.NodesError = err.Error()
	} else {
		usage := map[string]corev1.ResourceList{}
		var noUsage []string
		if se.clients.Metrics == nil {
			d.MetricsNote = "Resource usage needs metrics-server (addon/metrics-server)."
		} else if m, err := se.clients.Metrics.MetricsV1beta1().NodeMetricses().List(ctx, metav1.ListOptions{}); err != nil {
			d.MetricsNote = "No resource usage: metrics.k8s.io answered: " + err.Error()
			s.opts.Log.Info("no node metrics", "user", se.user, "err", err)
		} else {
			for _, nm := range m.Items {
				usage[nm.Name] = nm.Usage
			}
		}
		for _, n := range nodes.Items {
			row := nodeRow{Name: n.Name, Version: n.Status.NodeInfo.KubeletVersion, OS: n.Status.NodeInfo.OSImage,
				Runtime: n.Status.NodeInfo.ContainerRuntimeVersion, Unschedulable: n.Spec.Unschedulable, Age: n.CreationTimestamp,
				Status: "NotReady", Roles: nodeRoles(n)}
			for _, c := range n.Status.Conditions {
				if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
					row.Status = "Ready"
				}
			}
			if n.Spec.Unschedulable {
				row.Status += ",SchedulingDisabled"
			}
			for _, a := range n.Status.Addresses {
				if a.Type == corev1.NodeInternalIP {
					row.Address = a.Address
				}
			}
			if strings.Contains(row.Roles, "control-plane") {
				d.ControlPlanes++
			}
			alloc := n.Status.Allocatable
			row.CPU = usageOf(usage[n.Name], alloc, corev1.ResourceCPU)
			row.Memory = usageOf(usage[n.Name], alloc, corev1.ResourceMemory)
			if _, ok := usage[n.Name]; !ok && se.clients.Metrics != nil && d.MetricsNote == "" {
				noUsage = append(noUsage, n.Name)
			}
			d.Nodes = append(d.Nodes, row)
		}
		if len(noUsage) > 0 {
			// metrics-server serves a node once it holds two samples of
			// it, taken with the kubelet's ~10 s housekeeping: a node just
			// started or joined has none for a few seconds.
			d.MetricsNote = "No resource usage yet for " + strings.Join(noUsage, ", ") +
				": metrics.k8s.io has no two samples of it yet (metrics-server needs two, about 10-20 s after it or the node starts)."
		}
		d.CanCordon = se.can(ctx, access{verb: "patch", resource: "nodes"})
	}
	if s.opts.Certificates != nil {
		d.Certificates = s.opts.Certificates(ctx)
	}
	s.page(w, r, se, "overview", "Cluster", d)
}

func nodeRoles(n corev1.Node) string {
	var roles []string
	for k := range n.Labels {
		if role, ok := strings.CutPrefix(k, "node-role.kubernetes.io/"); ok && role != "" {
			roles = append(roles, role)
		}
	}
	slices.Sort(roles)
	if len(roles) == 0 {
		return "<none>"
	}
	return strings.Join(roles, ",")
}

// usageOf says "used / allocatable (percent)" for one resource, or only
// the allocatable amount without metrics.
func usageOf(used, alloc corev1.ResourceList, name corev1.ResourceName) string {
	a, ok := alloc[name]
	format := func(q resource.Quantity) string {
		if name == corev1.ResourceCPU {
			return fmt.Sprintf("%dm", q.MilliValue())
		}
		return fmt.Sprintf("%dMi", q.Value()/(1<<20))
	}
	u, have := used[name]
	switch {
	case !ok:
		return ""
	case !have:
		return "– / " + format(a)
	case a.MilliValue() == 0:
		return format(u) + " / " + format(a)
	default:
		return fmt.Sprintf("%s / %s (%d%%)", format(u), format(a), u.MilliValue()*100/a.MilliValue())
	}
}

func (s *Server) namespaces(w http.ResponseWriter, r *http.Request, se *session) {
	list, err := se.clients.Kube.CoreV1().Namespaces().List(r.Context(), metav1.ListOptions{})
	if err != nil {
		s.apiFail(w, r, se, "list namespaces", err)
		return
	}
	s.page(w, r, se, "namespaces", "Namespaces", list.Items)
}

// workload is a Deployment, StatefulSet, DaemonSet or Job with its pods.
type workload struct {
	Kind, Resource, Namespace, Name string
	Ready                           string
	Replicas                        int32
	Scalable, Restartable           bool
	CanScale, CanRestart            bool
	Pods                            []corev1.Pod
	Age                             metav1.Time
}

type workloadsData struct {
	Workloads    []workload
	Errors       []string
	CanDeletePod map[string]bool
}

func (s *Server) workloads(w http.ResponseWriter, r *http.Request, se *session) {
	ctx := r.Context()
	ns := r.URL.Query().Get("ns")
	kube := se.clients.Kube
	var d workloadsData
	pods, err := kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		s.apiFail(w, r, se, "list pods", err)
		return
	}
	podsOf := func(namespace string, sel *metav1.LabelSelector) []corev1.Pod {
		ls, err := metav1.LabelSelectorAsSelector(sel)
		if err != nil || ls.Empty() {
			return nil
		}
		var out []corev1.Pod
		for _, p := range pods.Items {
			if p.Namespace == namespace && ls.Matches(labels.Set(p.Labels)) {
				out = append(out, p)
			}
		}
		return out
	}
	if l, err := kube.AppsV1().Deployments(ns).List(ctx, metav1.ListOptions{}); err != nil {
		d.Errors = append(d.Errors, "Deployments: "+err.Error())
	} else {
		for _, o := range l.Items {
			d.Workloads = append(d.Workloads, workload{Kind: "Deployment", Resource: "deployments", Namespace: o.Namespace, Name: o.Name,
				Ready: fmt.Sprintf("%d/%d", o.Status.ReadyReplicas, deref(o.Spec.Replicas)), Replicas: deref(o.Spec.Replicas),
				Scalable: true, Restartable: true, Pods: podsOf(o.Namespace, o.Spec.Selector), Age: o.CreationTimestamp})
		}
	}
	if l, err := kube.AppsV1().StatefulSets(ns).List(ctx, metav1.ListOptions{}); err != nil {
		d.Errors = append(d.Errors, "StatefulSets: "+err.Error())
	} else {
		for _, o := range l.Items {
			d.Workloads = append(d.Workloads, workload{Kind: "StatefulSet", Resource: "statefulsets", Namespace: o.Namespace, Name: o.Name,
				Ready: fmt.Sprintf("%d/%d", o.Status.ReadyReplicas, deref(o.Spec.Replicas)), Replicas: deref(o.Spec.Replicas),
				Scalable: true, Restartable: true, Pods: podsOf(o.Namespace, o.Spec.Selector), Age: o.CreationTimestamp})
		}
	}
	if l, err := kube.AppsV1().DaemonSets(ns).List(ctx, metav1.ListOptions{}); err != nil {
		d.Errors = append(d.Errors, "DaemonSets: "+err.Error())
	} else {
		for _, o := range l.Items {
			d.Workloads = append(d.Workloads, workload{Kind: "DaemonSet", Resource: "daemonsets", Namespace: o.Namespace, Name: o.Name,
				Ready:       fmt.Sprintf("%d/%d", o.Status.NumberReady, o.Status.DesiredNumberScheduled),
				Restartable: true, Pods: podsOf(o.Namespace, o.Spec.Selector), Age: o.CreationTimestamp})
		}
	}
	if l, err := kube.BatchV1().Jobs(ns).List(ctx, metav1.ListOptions{}); err != nil {
		d.Errors = append(d.Errors, "Jobs: "+err.Error())
	} else {
		for _, o := range l.Items {
			d.Workloads = append(d.Workloads, workload{Kind: "Job", Resource: "jobs", Namespace: o.Namespace, Name: o.Name,
				Ready: jobStatus(o), Pods: podsOf(o.Namespace, o.Spec.Selector), Age: o.CreationTimestamp})
		}
	}
	// One access review per namespace and action, not per workload.
	type key struct{ ns, resource, what string }
	memo := map[key]bool{}
	ask := func(k key, a access) bool {
		if v, ok := memo[k]; ok {
			return v
		}
		v := se.can(ctx, a)
		memo[k] = v
		return v
	}
	d.CanDeletePod = map[string]bool{}
	for i := range d.Workloads {
		wl := &d.Workloads[i]
		if wl.Scalable {
			wl.CanScale = ask(key{wl.Namespace, wl.Resource, "scale"}, access{verb: "patch", group: "apps", resource: wl.Resource, namespace: wl.Namespace})
		}
		if wl.Restartable {
			wl.CanRestart = ask(key{wl.Namespace, wl.Resource, "restart"}, access{verb: "patch", group: "apps", resource: wl.Resource, namespace: wl.Namespace})
		}
		if len(wl.Pods) > 0 {
			d.CanDeletePod[wl.Namespace] = ask(key{wl.Namespace, "pods", "delete"}, access{verb: "delete", resource: "pods", namespace: wl.Namespace})
		}
	}
	s.page(w, r, se, "workloads", "Workloads", d)
}

func deref(p *int32) int32 {
	if p == nil {
		return 1
	}
	return *p
}

func jobStatus(j batchv1.Job) string {
	for _, c := range j.Status.Conditions {
		if c.Status == corev1.ConditionTrue && (c.Type == batchv1.JobComplete || c.Type == batchv1.JobFailed) {
			return string(c.Type)
		}
	}
	return fmt.Sprintf("%d/%d succeeded, %d active", j.Status.Succeeded, deref(j.Spec.Completions), j.Status.Active)
}

type podData struct {
	Pod         *corev1.Pod
	Statuses    map[string]corev1.ContainerStatus
	Events      []corev1.Event
	EventsError string
	CanDelete   bool
	CanLogs     bool
}

func (s *Server) pod(w http.ResponseWriter, r *http.Request, se *session) {
	ctx := r.Context()
	ns, name := r.PathValue("ns"), r.PathValue("name")
	p, err := se.clients.Kube.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		s.storedLogsPage(w, r, se, ns, name, true)
		return
	}
	if err != nil {
		s.apiFail(w, r, se, "get pod "+ns+"/"+name, err)
		return
	}
	d := podData{Pod: p, Statuses: map[string]corev1.ContainerStatus{}}
	for _, st := range append(p.Status.InitContainerStatuses, p.Status.ContainerStatuses...) {
		d.Statuses[st.Name] = st
	}
	ev, err := se.clients.Kube.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: fields.AndSelectors(
		fields.OneTermEqualSelector("involvedObject.name", name), fields.OneTermEqualSelector("involvedObject.kind", "Pod")).String()})
	if err != nil {
		d.EventsError = err.Error()
	} else {
		d.Events = sortEvents(ev.Items)
	}
	d.CanDelete = se.can(ctx, access{verb: "delete", resource: "pods", namespace: ns})
	d.CanLogs = se.can(ctx, access{verb: "get", resource: "pods", subresource: "log", namespace: ns})
	s.page(w, r, se, "pod", "Pod "+name, d)
}

// storedLogsLimit bounds the lines the stored-logs page shows (the newest).
const storedLogsLimit = 2000

type storedLogsData struct {
	Namespace, Name string
	// Gone: the pod no longer exists.
	Gone bool
	// CanSearch: the user may search the store (get on the log-store
	// Service's proxy and on its query key's Secret); Error is the store's answer when the search failed.
	CanSearch bool
	Error     string
	Lines     []logsearch.Line
	Limit     int
	Truncated bool
}

// storedLogs shows a pod's lines from the cluster's log store: the logs
// that outlive the pod.
func (s *Server) storedLogs(w http.ResponseWriter, r *http.Request, se *session) {
	ns, name := r.PathValue("ns"), r.PathValue("name")
	_, err := se.clients.Kube.CoreV1().Pods(ns).Get(r.Context(), name, metav1.GetOptions{})
	s.storedLogsPage(w, r, se, ns, name, apierrors.IsNotFound(err))
}

func (s *Server) storedLogsPage(w http.ResponseWriter, r *http.Request, se *session, ns, name string, gone bool) {
	ctx := r.Context()
	d := storedLogsData{Namespace: ns, Name: name, Gone: gone, Limit: storedLogsLimit}
	switch {
	case se.clients.Logs == nil:
		d.Error = "This dashboard has no way to the log store."
	case !se.can(ctx, access{verb: "get", resource: "services", subresource: "proxy", namespace: metav1.NamespaceSystem, name: manifests.LogStoreQueryName}):
		// The store holds every namespace's lines: reading it through
		// the API server is a right of its own. (So is reading its query
		// key; a store from before the key has none, so that right is not
		// asked here: the search says what is missing.)
	default:
		d.CanSearch = true
		lines, err := se.clients.Logs.Search(ctx, logsearch.Query{Namespace: ns, Pod: name, Limit: storedLogsLimit}.LogsQL())
		if err != nil {
			d.Error = err.Error()
			break
		}
		slices.Reverse(lines) // newest first from the store, oldest first here
		d.Lines, d.Truncated = lines, len(lines) >= storedLogsLimit
	}
	title := "Pod " + name + ": stored logs"
	v := &view{Title: title, User: se.user, CSRF: se.csrf, Nav: "pod", Data: d}
	code := http.StatusOK
	if gone {
		code = http.StatusNotFound
	}
	s.render(w, r, code, "storedlogs", v)
}

// podLog streams a container's log as plain text; with follow=1 it keeps
// streaming until the browser goes away (the page's live tail).
func (s *Server) podLog(w http.ResponseWriter, r *http.Request, se *session) {
	ns, name := r.PathValue("ns"), r.PathValue("name")
	q := r.URL.Query()
	tail := int64(500)
	opts := &corev1.PodLogOptions{Container: q.Get("container"), Follow: q.Get("follow") == "1", TailLines: &tail}
	rc, err := se.clients.Kube.CoreV1().Pods(ns).GetLogs(name, opts).Stream(r.Context())
	if err != nil {
		code := http.StatusBadGateway
		var st apierrors.APIStatus
		if ok := asStatus(err, &st); ok {
			code = int(st.Status().Code)
		}
		http.Error(w, "logs of "+ns+"/"+name+": "+err.Error(), code)
		return
	}
	defer rc.Close()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	rcw := http.NewResponseController(w)
	buf := make([]byte, 32<<10)
	for {
		n, err := rc.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return
			}
			_ = rcw.Flush()
		}
		if err != nil {
			if err != io.EOF && r.Context().Err() == nil {
				fmt.Fprintf(w, "\n[the log stream ended: %v]\n", err)
			}
			return
		}
	}
}

func asStatus(err error, st *apierrors.APIStatus) bool {
	s, ok := err.(apierrors.APIStatus)
	if ok && s.Status().Code != 0 {
		*st = s
		return true
	}
	return false
}

func sortEvents(items []corev1.Event) []corev1.Event {
	last := func(e corev1.Event) time.Time {
		for _, t := range []time.Time{e.LastTimestamp.Time, e.EventTime.Time, e.FirstTimestamp.Time, e.CreationTimestamp.Time} {
			if !t.IsZero() {
				return t
			}
		}
		return time.Time{}
	}
	slices.SortStableFunc(items, func(a, b corev1.Event) int { return last(b).Compare(last(a)) })
	return items
}

type serviceRow struct {
	Service   corev1.Service
	Endpoints []string
}

func (s *Server) services(w http.ResponseWriter, r *http.Request, se *session) {
	ctx := r.Context()
	ns := r.URL.Query().Get("ns")
	list, err := se.clients.Kube.CoreV1().Services(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		s.apiFail(w, r, se, "list services", err)
		return
	}
	byService := map[string][]string{}
	var epErr string
	if es, err := se.clients.Kube.DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{}); err != nil {
		epErr = err.Error()
	} else {
		for _, sl := range es.Items {
			svc := sl.Labels[discoveryv1.LabelServiceName]
			if svc == "" {
				continue
			}
			for _, ep := range sl.Endpoints {
				for _, addr := range ep.Addresses {
					for _, p := range sl.Ports {
						if p.Port == nil {
							continue
						}
						e := fmt.Sprintf("%s:%d", addr, *p.Port)
						if ep.Conditions.Ready != nil && !*ep.Conditions.Ready {
							e += " (not ready)"
						}
						k := sl.Namespace + "/" + svc
						byService[k] = append(byService[k], e)
					}
				}
			}
		}
	}
	var rows []serviceRow
	for _, svc := range list.Items {
		eps := byService[svc.Namespace+"/"+svc.Name]
		sortStrings(eps)
		rows = append(rows, serviceRow{Service: svc, Endpoints: eps})
	}
	s.page(w, r, se, "services", "Services", map[string]any{"Services": rows, "EndpointsError": epErr})
}

func sortStrings(s []string) { slices.SortFunc(s, cmp.Compare[string]) }

func (s *Server) storage(w http.ResponseWriter, r *http.Request, se *session) {
	ctx := r.Context()
	ns := r.URL.Query().Get("ns")
	d := map[string]any{}
	if pvs, err := se.clients.Kube.CoreV1().PersistentVolumes().List(ctx, metav1.ListOptions{}); err != nil {
		d["PVError"] = err.Error()
	} else {
		d["PVs"] = pvs.Items
	}
	if pvcs, err := se.clients.Kube.CoreV1().PersistentVolumeClaims(ns).List(ctx, metav1.ListOptions{}); err != nil {
		d["PVCError"] = err.Error()
	} else {
		d["PVCs"] = pvcs.Items
	}
	s.page(w, r, se, "storage", "Storage", d)
}

func (s *Server) events(w http.ResponseWriter, r *http.Request, se *session) {
	list, err := se.clients.Kube.CoreV1().Events(r.URL.Query().Get("ns")).List(r.Context(), metav1.ListOptions{})
	if err != nil {
		s.apiFail(w, r, se, "list events", err)
		return
	}
	items := sortEvents(list.Items)
	if len(items) > 500 {
		items = items[:500]
	}
	s.page(w, r, se, "events", "Events", items)
}
