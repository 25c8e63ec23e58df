// Command devicemanager-harness runs the kubelet's own device manager
// (k8s.io/kubernetes/pkg/kubelet/cm/devicemanager) in a temporary device-plugin directory against
// a device plugin it starts itself, and prints what the kubelet would see as one JSON document:
// registration and capacity (GetCapacity), Allocate for pods' containers (device specs, mounts,
// envs), the plugin's re-registration after a plugin restart and after a kubelet (device manager)
// restart, and the node-status PATCHes the plugin sent to a stub API server.
//
//	devicemanager-harness -dir DIR -resources N [-pod NAME:RES=QTY,...]... -- PLUGIN ARGV...
//
// The plugin gets "--device-plugin-dir DIR --node-name harness-node --kubeconfig FILE" appended;
// FILE points at an HTTPS stub that answers every PATCH with 200 and records it.
package main

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"
	_ "unsafe" // go:linkname

	cadvisorapi "github.com/google/cadvisor/lib/model"
	"k8s.io/klog/v2"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/kubernetes/pkg/kubelet/cm/containermap"
	"k8s.io/kubernetes/pkg/kubelet/cm/devicemanager"
	"k8s.io/kubernetes/pkg/kubelet/cm/topologymanager"
	"k8s.io/kubernetes/pkg/kubelet/lifecycle"
)

// newManagerImpl is the device manager's constructor with the registration socket path as a
// parameter (the exported NewManagerImpl hard-codes /var/lib/kubelet/device-plugins/kubelet.sock);
// the checkpoint lives beside that socket, as on a real node.
//
//go:linkname newManagerImpl k8s.io/kubernetes/pkg/kubelet/cm/devicemanager.newManagerImpl
func newManagerImpl(logger klog.Logger, socketPath string, topology []cadvisorapi.Node, store topologymanager.Store) (*devicemanager.ManagerImpl, error)

type sourcesReady struct{}

func (sourcesReady) AddSource(string) {}
func (sourcesReady) AllReady() bool   { return true }

type podFlags []string

func (p *podFlags) String() string     { return strings.Join(*p, " ") }
func (p *podFlags) Set(s string) error { *p = append(*p, s); return nil }

// Capacity is what the kubelet would write into its node status from the device manager.
type Capacity struct {
	Capacity    map[string]int64 `json:"capacity"`
	Allocatable map[string]int64 `json:"allocatable"`
	Deleted     []string         `json:"deleted"`
	Seconds     float64          `json:"seconds"`
}

// Container is what the runtime would get for a container: GetDeviceRunContainerOptions.
type Container struct {
	Pod       string              `json:"pod"`
	Error     string              `json:"error,omitempty"`
	Allocated map[string][]string `json:"allocated"`
	Devices   []map[string]string `json:"devices"`
	Mounts    []map[string]any    `json:"mounts"`
	Envs      map[string]string   `json:"envs"`
}

type Patch struct {
	Path        string          `json:"path"`
	ContentType string          `json:"content_type"`
	Body        json.RawMessage `json:"body"`
}

type Result struct {
	Registered          Capacity    `json:"registered"`
	Containers          []Container `json:"containers"`
	PluginStopped       Capacity    `json:"plugin_stopped"`
	PluginRestarted     Capacity    `json:"plugin_restarted"`
	AfterPluginRestart  Container   `json:"after_plugin_restart"`
	KubeletRestarted    Capacity    `json:"kubelet_restarted"`
	AfterKubeletRestart Container   `json:"after_kubelet_restart"`
	Checkpointed        []Container `json:"checkpointed"`
	NodePatches         []Patch     `json:"node_patches"`
}

type harness struct {
	dir       string
	resources int
	timeout   time.Duration
	argv      []string
	logger    klog.Logger
	manager   *devicemanager.ManagerImpl
	plugin    *exec.Cmd
	pods      []*v1.Pod
	podsMu    sync.Mutex
}

// running is the plugin process, stopped by fail too: an orphaned plugin would keep re-serving
// its sockets in the directory.
var running *harness

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "devicemanager-harness: "+format+"\n", args...)
	if running != nil {
		running.stopPlugin()
	}
	os.Exit(1)
}

func (h *harness) activePods() []*v1.Pod {
	h.podsMu.Lock()
	defer h.podsMu.Unlock()
	return append([]*v1.Pod(nil), h.pods...)
}

func (h *harness) startManager() {
	// Two NUMA nodes, as the multi-NUMA plugin topology assumes; the fake topology manager
	// gives no hint, so GetPreferredAllocation decides placement as on a node with policy none.
	topology := []cadvisorapi.Node{{Id: 0}, {Id: 1}}
	manager, err := newManagerImpl(h.logger, filepath.Join(h.dir, "kubelet.sock"), topology,
		topologymanager.NewFakeManager(h.logger))
	if err != nil {
		fail("device manager: %v", err)
	}
	if err := manager.Start(h.logger, h.activePods, sourcesReady{}, containermap.NewContainerMap(), sets.New[string]()); err != nil {
		fail("device manager start: %v", err)
	}
	h.manager = manager
}

func (h *harness) startPlugin() {
	log, err := os.OpenFile(filepath.Join(h.dir, "plugin.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		fail("plugin log: %v", err)
	}
	h.plugin = exec.Command(h.argv[0], h.argv[1:]...)
	h.plugin.Stdout, h.plugin.Stderr = log, log
	if err := h.plugin.Start(); err != nil {
		fail("plugin start: %v", err)
	}
}

func (h *harness) stopPlugin() {
	if h.plugin == nil || h.plugin.Process == nil {
		return
	}
	_ = h.plugin.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- h.plugin.Wait() }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		_ = h.plugin.Process.Kill()
		<-done
	}
	h.plugin = nil
}

func quantities(list v1.ResourceList) map[string]int64 {
	out := map[string]int64{}
	for name, q := range list {
		out[string(name)] = q.Value()
	}
	return out
}

// waitCapacity polls GetCapacity, as the kubelet's node-status loop does, until ready() holds.
func (h *harness) waitCapacity(what string, since time.Time, ready func(Capacity) bool) Capacity {
	deadline := time.Now().Add(h.timeout)
	for {
		capacity, allocatable, deleted := h.manager.GetCapacity(h.logger)
		c := Capacity{quantities(capacity), quantities(allocatable), deleted, time.Since(since).Seconds()}
		sort.Strings(c.Deleted)
		if ready(c) {
			return c
		}
		if time.Now().After(deadline) {
			logText, _ := os.ReadFile(filepath.Join(h.dir, "plugin.log"))
			fail("timed out waiting for %s; last capacity %v allocatable %v\nplugin log:\n%s",
				what, c.Capacity, c.Allocatable, tail(string(logText), 30))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func tail(text string, lines int) string {
	parts := strings.Split(strings.TrimRight(text, "\n"), "\n")
	if len(parts) > lines {
		parts = parts[len(parts)-lines:]
	}
	return strings.Join(parts, "\n")
}

func (h *harness) allHealthy(c Capacity) bool {
	if len(c.Capacity) != h.resources {
		return false
	}
	for name, total := range c.Capacity {
		if total == 0 || c.Allocatable[name] != total {
			return false
		}
	}
	return true
}

// newPod parses "NAME:RES=QTY,RES=QTY" into a pod with one container "app" (limits = requests).
func newPod(spec string) *v1.Pod {
	name, list, ok := strings.Cut(spec, ":")
	if !ok {
		fail("-pod %q: expected NAME:RES=QTY,...", spec)
	}
	limits := v1.ResourceList{}
	for _, item := range strings.Split(list, ",") {
		res, qty, ok := strings.Cut(item, "=")
		if !ok {
			fail("-pod %q: %q is not RES=QTY", spec, item)
		}
		limits[v1.ResourceName(res)] = resource.MustParse(qty)
	}
	return &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", UID: types.UID("uid-" + name)},
		Spec: v1.PodSpec{Containers: []v1.Container{{
			Name:      "app",
			Resources: v1.ResourceRequirements{Limits: limits, Requests: limits},
		}}},
	}
}

// admit runs what the kubelet runs for a new pod's container: Allocate at admission, then
// GetDeviceRunContainerOptions when the container is created.
func (h *harness) admit(pod *v1.Pod) Container {
	h.podsMu.Lock()
	h.pods = append(h.pods, pod)
	h.podsMu.Unlock()
	container := &pod.Spec.Containers[0]
	if err := h.manager.Allocate(context.Background(), pod, container, lifecycle.AddOperation); err != nil {
		return Container{Pod: pod.Name, Error: err.Error()}
	}
	return h.runOptions(pod)
}

func (h *harness) runOptions(pod *v1.Pod) Container {
	container := &pod.Spec.Containers[0]
	out := Container{Pod: pod.Name, Allocated: map[string][]string{}, Envs: map[string]string{},
		Devices: []map[string]string{}, Mounts: []map[string]any{}}
	opts, err := h.manager.GetDeviceRunContainerOptions(context.Background(), pod, container)
	if err != nil {
		out.Error = err.Error()
		return out
	}
	for res, ids := range h.manager.GetDevices(string(pod.UID), container.Name) {
		list := make([]string, 0, len(ids))
		for id := range ids {
			list = append(list, id)
		}
		sort.Strings(list)
		out.Allocated[res] = list
	}
	if opts == nil {
		return out
	}
	for _, d := range opts.Devices {
		out.Devices = append(out.Devices, map[string]string{
			"container_path": d.PathInContainer, "host_path": d.PathOnHost, "permissions": d.Permissions})
	}
	for _, m := range opts.Mounts {
		out.Mounts = append(out.Mounts, map[string]any{
			"container_path": m.ContainerPath, "host_path": m.HostPath, "read_only": m.ReadOnly})
	}
	for _, e := range opts.Envs {
		out.Envs[e.Name] = e.Value
	}
	return out
}

// apiStub is an HTTPS API server that records PATCHes; the plugin reaches it via --kubeconfig.
func apiStub(dir string) (*httptest.Server, string, func() []Patch) {
	var mu sync.Mutex
	var patches []Patch
	server := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if r.Method == http.MethodPatch && r.Header.Get("Authorization") == "Bearer harness-token" {
			mu.Lock()
			patches = append(patches, Patch{r.URL.Path, r.Header.Get("Content-Type"), body})
			mu.Unlock()
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte("{}"))
			return
		}
		http.Error(w, "{}", http.StatusForbidden)
	}))
	caPath := filepath.Join(dir, "api-ca.crt")
	caPEM := pemEncode(server.Certificate().Raw)
	if err := os.WriteFile(caPath, caPEM, 0o600); err != nil {
		fail("api CA: %v", err)
	}
	kubeconfig := filepath.Join(dir, "harness.kubeconfig")
	config := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters: [{name: harness, cluster: {server: %q, certificate-authority: api-ca.crt}}]
users: [{name: harness, user: {token: harness-token}}]
contexts: [{name: harness, context: {cluster: harness, user: harness}}]
current-context: harness
`, server.URL)
	if err := os.WriteFile(kubeconfig, []byte(config), 0o600); err != nil {
		fail("kubeconfig: %v", err)
	}
	return server, kubeconfig, func() []Patch {
		mu.Lock()
		defer mu.Unlock()
		return append([]Patch(nil), patches...)
	}
}

func pemEncode(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func main() {
	var h harness
	var pods podFlags
	flag.StringVar(&h.dir, "dir", "", "device-plugin directory (created; kubelet.sock and the checkpoint live here)")
	flag.IntVar(&h.resources, "resources", 0, "resources the plugin registers")
	flag.DurationVar(&h.timeout, "timeout", 60*time.Second, "longest wait for each capacity change")
	flag.Var(&pods, "pod", "NAME:RES=QTY,... a pod with one container to admit (repeatable)")
	flag.Parse()
	if h.dir == "" || h.resources < 1 || flag.NArg() == 0 {
		fail("usage: devicemanager-harness -dir DIR -resources N [-pod NAME:RES=QTY,...]... -- PLUGIN ARGV...")
	}
	if err := os.MkdirAll(h.dir, 0o750); err != nil {
		fail("%v", err)
	}
	h.logger = klog.Background()
	server, kubeconfig, patches := apiStub(h.dir)
	defer server.Close()
	h.argv = append(flag.Args(), "--device-plugin-dir", h.dir, "--node-name", "harness-node",
		"--kubeconfig", kubeconfig)

	var result Result
	running = &h
	h.startManager()
	started := time.Now()
	h.startPlugin()
	defer h.stopPlugin()
	result.Registered = h.waitCapacity("registration", started, h.allHealthy)

	for _, spec := range pods {
		result.Containers = append(result.Containers, h.admit(newPod(spec)))
	}

	// Plugin restart: the kubelet keeps the resource (Unhealthy, grace period) until the plugin
	// registers again; then new pods are admitted through the new connection.
	stopped := time.Now()
	h.stopPlugin()
	result.PluginStopped = h.waitCapacity("devices to turn unhealthy", stopped, func(c Capacity) bool {
		for _, n := range c.Allocatable {
			if n != 0 {
				return false
			}
		}
		return len(c.Capacity) == h.resources
	})
	restarted := time.Now()
	h.startPlugin()
	result.PluginRestarted = h.waitCapacity("re-registration after a plugin restart", restarted, h.allHealthy)
	if len(pods) > 0 {
		pod := newPod(pods[0])
		pod.Name, pod.UID = pod.Name+"-after-plugin-restart", pod.UID+"-2"
		result.AfterPluginRestart = h.admit(pod)
	}

	// Kubelet restart: a new device manager on the same directory wipes the plugin sockets and
	// serves a new kubelet.sock; the plugin must serve and register again by itself. Allocations
	// come back from the checkpoint.
	if err := h.manager.Stop(h.logger); err != nil {
		fail("device manager stop: %v", err)
	}
	kubeletRestart := time.Now()
	h.startManager()
	result.KubeletRestarted = h.waitCapacity("re-registration after a kubelet restart", kubeletRestart, h.allHealthy)
	for _, pod := range h.activePods() {
		result.Checkpointed = append(result.Checkpointed, h.runOptions(pod))
	}
	if len(pods) > 0 {
		pod := newPod(pods[0])
		pod.Name, pod.UID = pod.Name+"-after-kubelet-restart", pod.UID+"-3"
		result.AfterKubeletRestart = h.admit(pod)
	}
	result.NodePatches = patches()
	if err := h.manager.Stop(h.logger); err != nil {
		fail("device manager stop: %v", err)
	}

	encoder := json.NewEncoder(os.Stdout)
	encoder.SetIndent("", "  ")
	if err := encoder.Encode(result); err != nil {
		fail("%v", err)
	}
}
