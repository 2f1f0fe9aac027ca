// webapp-go: the WebApp operator of staircase's webapp benchmark, written the kubebuilder way
// with controller-runtime: a cached client, controllerutil.CreateOrUpdate for the children,
// meta.SetStatusCondition for the Ready condition, a finalizer that removes the external record.
//
// Environment: KUBECONFIG (the cluster), WEBAPP_RESYNC_S (the cache's SyncPeriod, seconds),
// WEBAPP_CONCURRENCY (MaxConcurrentReconciles), WEBAPP_JSON (set: JSON instead of protobuf for
// built-in kinds, as the Rust operators send). See ../README.md.
package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/intstr"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
)

// The API types (what controller-gen would generate the deep copies for).

var GroupVersion = schema.GroupVersion{Group: "bench.staircase.rs", Version: "v1"}

type WebAppSpec struct {
	Image    string            `json:"image"`
	Replicas int32             `json:"replicas"`
	Config   map[string]string `json:"config,omitempty"`
}

type WebAppStatus struct {
	ObservedGeneration int64              `json:"observedGeneration,omitempty"`
	Conditions         []metav1.Condition `json:"conditions,omitempty"`
	AvailableReplicas  *int32             `json:"availableReplicas,omitempty"`
}

type WebApp struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              WebAppSpec    `json:"spec,omitempty"`
	Status            *WebAppStatus `json:"status,omitempty"`
}

type WebAppList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []WebApp `json:"items"`
}

func (in *WebAppStatus) DeepCopy() *WebAppStatus {
	if in == nil {
		return nil
	}
	out := &WebAppStatus{ObservedGeneration: in.ObservedGeneration}
	if in.Conditions != nil {
		out.Conditions = make([]metav1.Condition, len(in.Conditions))
		for i := range in.Conditions {
			in.Conditions[i].DeepCopyInto(&out.Conditions[i])
		}
	}
	if in.AvailableReplicas != nil {
		v := *in.AvailableReplicas
		out.AvailableReplicas = &v
	}
	return out
}

func (in *WebApp) DeepCopyInto(out *WebApp) {
	*out = *in
	in.ObjectMeta.DeepCopyInto(&out.ObjectMeta)
	if in.Spec.Config != nil {
		out.Spec.Config = make(map[string]string, len(in.Spec.Config))
		for k, v := range in.Spec.Config {
			out.Spec.Config[k] = v
		}
	}
	out.Status = in.Status.DeepCopy()
}

func (in *WebApp) DeepCopyObject() runtime.Object {
	out := &WebApp{}
	in.DeepCopyInto(out)
	return out
}

func (in *WebAppList) DeepCopyObject() runtime.Object {
	out := &WebAppList{TypeMeta: in.TypeMeta}
	in.ListMeta.DeepCopyInto(&out.ListMeta)
	if in.Items != nil {
		out.Items = make([]WebApp, len(in.Items))
		for i := range in.Items {
			in.Items[i].DeepCopyInto(&out.Items[i])
		}
	}
	return out
}

// The controller.

const (
	finalizer        = "bench.staircase.rs/external-record"
	recordsNamespace = "webapp-records"
)

// RecordName names the external record of a WebApp (a ConfigMap in recordsNamespace).
func RecordName(app *WebApp) string { return app.Namespace + "." + app.Name }

type WebAppReconciler struct {
	client.Client
	Scheme *runtime.Scheme
}

func (r *WebAppReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	app := &WebApp{}
	if err := r.Get(ctx, req.NamespacedName, app); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}

	if !app.DeletionTimestamp.IsZero() {
		if controllerutil.ContainsFinalizer(app, finalizer) {
			record := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: RecordName(app), Namespace: recordsNamespace}}
			if err := r.Delete(ctx, record); client.IgnoreNotFound(err) != nil {
				return ctrl.Result{}, err
			}
			controllerutil.RemoveFinalizer(app, finalizer)
			if err := r.Update(ctx, app); err != nil {
				return ctrl.Result{}, err
			}
		}
		return ctrl.Result{}, nil
	}
	if !controllerutil.ContainsFinalizer(app, finalizer) {
		controllerutil.AddFinalizer(app, finalizer)
		if err := r.Update(ctx, app); err != nil {
			return ctrl.Result{}, err
		}
	}

	labels := map[string]string{"app.kubernetes.io/name": "webapp", "app.kubernetes.io/instance": app.Name}

	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: app.Name + "-config", Namespace: app.Namespace}}
	if _, err := controllerutil.CreateOrUpdate(ctx, r.Client, cm, func() error {
		cm.Labels = labels
		cm.Data = app.Spec.Config
		return controllerutil.SetControllerReference(app, cm, r.Scheme)
	}); err != nil {
		return ctrl.Result{}, err
	}

	dep := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: app.Name, Namespace: app.Namespace}}
	if _, err := controllerutil.CreateOrUpdate(ctx, r.Client, dep, func() error {
		dep.Labels = labels
		replicas := app.Spec.Replicas
		dep.Spec.Replicas = &replicas
		if dep.Spec.Selector == nil { // immutable once set
			dep.Spec.Selector = &metav1.LabelSelector{MatchLabels: labels}
		}
		dep.Spec.Template.Labels = labels
		if len(dep.Spec.Template.Spec.Containers) != 1 {
			dep.Spec.Template.Spec.Containers = []corev1.Container{{Name: "web"}}
		}
		c := &dep.Spec.Template.Spec.Containers[0]
		c.Name = "web"
		c.Image = app.Spec.Image
		c.Ports = []corev1.ContainerPort{{Name: "http", ContainerPort: 8080, Protocol: corev1.ProtocolTCP}}
		c.EnvFrom = []corev1.EnvFromSource{{ConfigMapRef: &corev1.ConfigMapEnvSource{
			LocalObjectReference: corev1.LocalObjectReference{Name: cm.Name}}}}
		return controllerutil.SetControllerReference(app, dep, r.Scheme)
	}); err != nil {
		return ctrl.Result{}, err
	}

	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: app.Name, Namespace: app.Namespace}}
	if _, err := controllerutil.CreateOrUpdate(ctx, r.Client, svc, func() error {
		svc.Labels = labels
		svc.Spec.Selector = labels
		svc.Spec.Ports = []corev1.ServicePort{{
			Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080), Protocol: corev1.ProtocolTCP}}
		return controllerutil.SetControllerReference(app, svc, r.Scheme)
	}); err != nil {
		return ctrl.Result{}, err
	}

	// Status: observedGeneration, availableReplicas and Ready.
	want := app.Spec.Replicas
	available := dep.Status.AvailableReplicas
	status := app.Status.DeepCopy()
	if status == nil {
		status = &WebAppStatus{}
	}
	status.ObservedGeneration = app.Generation
	status.AvailableReplicas = &available
	ready := metav1.Condition{
		Type: "Ready", Status: metav1.ConditionFalse, Reason: "DeploymentNotAvailable",
		Message:            fmt.Sprintf("%d/%d replicas available", available, want),
		ObservedGeneration: app.Generation,
	}
	if dep.Status.ObservedGeneration >= dep.Generation && dep.Status.UpdatedReplicas >= want && available >= want {
		ready.Status, ready.Reason, ready.Message = metav1.ConditionTrue, "Available", "the Deployment is available"
	}
	meta.SetStatusCondition(&status.Conditions, ready)
	if !equality.Semantic.DeepEqual(app.Status, status) {
		app.Status = status
		if err := r.Status().Update(ctx, app); err != nil {
			return ctrl.Result{}, err
		}
	}
	return ctrl.Result{}, nil
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil {
		return v
	}
	return def
}

func main() {
	ctrl.SetLogger(zap.New())
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		panic(err)
	}
	scheme.AddKnownTypes(GroupVersion, &WebApp{}, &WebAppList{})
	metav1.AddToGroupVersion(scheme, GroupVersion)

	resync := time.Duration(envInt("WEBAPP_RESYNC_S", 36000)) * time.Second
	cfg := ctrl.GetConfigOrDie()
	// client-go sends built-in kinds as protobuf unless told otherwise (cheaper to encode); the
	// benchmark has every operator send JSON.
	if os.Getenv("WEBAPP_JSON") != "" {
		cfg.ContentType = runtime.ContentTypeJSON
		cfg.AcceptContentTypes = runtime.ContentTypeJSON
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                 scheme,
		Cache:                  cache.Options{SyncPeriod: &resync},
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		LeaderElection:         false,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "manager:", err)
		os.Exit(1)
	}
	err = ctrl.NewControllerManagedBy(mgr).
		For(&WebApp{}).
		Owns(&corev1.ConfigMap{}).
		Owns(&appsv1.Deployment{}).
		Owns(&corev1.Service{}).
		WithOptions(controller.Options{MaxConcurrentReconciles: envInt("WEBAPP_CONCURRENCY", 1)}).
		Complete(&WebAppReconciler{Client: mgr.GetClient(), Scheme: mgr.GetScheme()})
	if err != nil {
		fmt.Fprintln(os.Stderr, "controller:", err)
		os.Exit(1)
	}
	if err := mgr.Start(ctrl.SetupSignalHandler()); err != nil {
		fmt.Fprintln(os.Stderr, "manager:", err)
		os.Exit(1)
	}
}
