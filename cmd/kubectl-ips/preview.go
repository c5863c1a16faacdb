package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/yaml"

	"github.com/tcr-assistant/tcr-assistant/admission"
	tcrv1 "github.com/tcr-assistant/tcr-assistant/api/v1"
	"github.com/tcr-assistant/tcr-assistant/controllers"
)

// Exit codes of preview.
const (
	previewShown   = 0 // every ImagePullSecret was previewed
	previewFailed  = 1 // the cluster could not be read
	previewInvalid = 2 // the command line or the file could not be used, the webhook would refuse a CR, or NAME does not exist
)

const previewUsage = `Usage: kubectl ips preview (-f FILE | NAME...) [flags]

Shows what the controller would do for each ImagePullSecret in FILE ("-" for standard input), or
for the ImagePullSecrets NAME... already in the cluster, by running the controller's rule engine
and plan over the cluster your kubeconfig points at: the namespaces and ServiceAccounts the rule
selects, the Secret tcr.ips<name> it would create, update, keep or delete in each, the same-name
Secrets it would leave alone as foreign (SecretNotOwned), and the admission webhook's warnings or
refusal. For a docker.instanceToken, where the token comes from (the instance, and the API key
Secret or the manager's cloud identity) and the rotationPolicy; the preview mints nothing, so
whether existing Secrets hold the current token is unknown. For a rule with recoverPods, it also lists the Pending Pods (by field selector) and shows
the Pods stuck without the rule's Secret that the controller would evict, and those it would leave
alone (BarePod, OwnPullSecrets), as it will once it has distributed the Secret. It only reads (get
and list); the password is never printed.
A CR of FILE that is already in the cluster is previewed as an update of it (its Secrets are
ours); one that is not is new, and every Secret already holding its name is foreign.
Exits 0 when every ImagePullSecret was previewed, 1 when the cluster could not be read, 2 when
FILE cannot be read, the admission webhook would refuse a CR of FILE, or NAME does not exist.
`

// previewPageSize bounds each list request, so that a cluster of 10,000 namespaces is read in
// pages rather than in one response.
var previewPageSize int64 = 500

// wrapTransport, when set (by tests), wraps the transport of every request the command makes.
var wrapTransport func(http.RoundTripper) http.RoundTripper

// The -o yaml|json document. Its field order is fixed by these types; lists are sorted.
const (
	previewAPIVersion = "preview.kubectl-ips.tcr.tencentcloudcr.com/v1alpha1"
	previewKind       = "ImagePullSecretPreviewList"
)

type previewList struct {
	APIVersion string        `json:"apiVersion"`
	Kind       string        `json:"kind"`
	Items      []previewItem `json:"items"`
}

type previewItem struct {
	Name string `json:"name"`
	// InCluster is true when an ImagePullSecret of this name exists: its Secrets are ours.
	InCluster bool             `json:"inCluster"`
	Admission previewAdmission `json:"admission"`
	// Notes say what limits the preview: a spec the controller cannot compile, a password it
	// cannot read.
	Notes []string `json:"notes,omitempty"`
	// Credential is where a minted credential comes from; only for a docker.instanceToken.
	Credential *previewCredential `json:"credential,omitempty"`
	// Delivery is spec.delivery when it is not the default, Secrets.
	Delivery   string             `json:"delivery,omitempty"`
	Summary    *previewSummary    `json:"summary,omitempty"`
	Namespaces []previewNamespace `json:"namespaces,omitempty"`
	// Recovery is what recoverPods would do; only for a rule with recoverPods.
	Recovery *previewRecovery `json:"recovery,omitempty"`
}

type previewAdmission struct {
	Allowed  bool     `json:"allowed"`
	Warnings []string `json:"warnings,omitempty"`
	// Refusal is the webhook's message when it would refuse the spec.
	Refusal string `json:"refusal,omitempty"`
}

// previewCredential is the credential the controller mints for a docker.instanceToken.
type previewCredential struct {
	// Type is the type of token: Temporary or LongTerm.
	Type       string `json:"type"`
	RegistryID string `json:"registryId"`
	Region     string `json:"region"`
	// APIKeySecret is "namespace/name" of the Secret of the API key (apiKeySecretRef); empty
	// when the manager mints with its own cloud identity (CloudIdentity).
	APIKeySecret  string `json:"apiKeySecret,omitempty"`
	CloudIdentity bool   `json:"cloudIdentity,omitempty"`
	// RotationPolicy is the rule's rotationPolicy, Verified when it has none.
	RotationPolicy string `json:"rotationPolicy"`
}

type previewSummary struct {
	// SecretsDesired and SAsDesired are what the status would count.
	SecretsDesired int `json:"secretsDesired"`
	SAsDesired     int `json:"sAsDesired"`
	// Secrets counts the namespaces by what would happen to the Secret (create, update, ...).
	Secrets           map[string]int `json:"secrets"`
	ReferencesAdded   int            `json:"referencesAdded"`
	ReferencesRemoved int            `json:"referencesRemoved"`
	NamespacesRead    int            `json:"namespacesRead"`
	// NamespacesTerminating are skipped: the controller never writes in them.
	NamespacesTerminating int `json:"namespacesTerminating"`
}

type previewNamespace struct {
	Name             string           `json:"name"`
	Selected         bool             `json:"selected"`
	Secret           string           `json:"secret,omitempty"`
	ServiceAccounts  []string         `json:"serviceAccounts,omitempty"`
	AddReferences    []string         `json:"addReferences,omitempty"`
	RemoveReferences []string         `json:"removeReferences,omitempty"`
	Failures         []previewFailure `json:"failures,omitempty"`
}

type previewFailure struct {
	Reason  string `json:"reason"`
	Message string `json:"message"`
}

type previewRecovery struct {
	// PendingPodsRead counts the Pending Pods read, in every namespace.
	PendingPodsRead int `json:"pendingPodsRead"`
	// Evict are the stuck Pods the controller would evict, for their controller to recreate.
	Evict []previewPod `json:"evict,omitempty"`
	// Stuck are the stuck Pods it would leave alone and report (status.stuckPods), with why.
	Stuck []previewPod `json:"stuck,omitempty"`
}

type previewPod struct {
	NamespacedName string `json:"namespacedName"`
	// Controller is the Pod's controller reference as "Kind/name", if it has one.
	Controller string `json:"controller,omitempty"`
	// Reason is why a stuck Pod is left alone: BarePod or OwnPullSecrets.
	Reason string `json:"reason,omitempty"`
}

// preview runs `kubectl ips preview` and returns the exit code.
func preview(args []string, stdout, stderr io.Writer) int {
	flags := flag.NewFlagSet("preview", flag.ContinueOnError)
	flags.SetOutput(stderr)
	file := flags.String("f", "", "file with one or more ImagePullSecrets (\"-\" for standard input)")
	output := flags.String("o", "", "output format: yaml or json (default: a table)")
	kubeconfig := flags.String("kubeconfig", "", "kubeconfig of the cluster to read (default: $KUBECONFIG or ~/.kube/config)")
	kubeContext := flags.String("context", "", "kubeconfig context to use")
	namespace := flags.String("controller-namespace", "tcr-assistant-system", "the controller's namespace, where passwordSecretRef Secrets live")
	flags.Usage = func() {
		fmt.Fprint(stderr, previewUsage, "\nFlags:\n")
		flags.PrintDefaults()
	}
	if err := flags.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return previewShown
		}
		return previewInvalid
	}
	// flag stops at the first NAME; flags after it are parsed too, as kubectl does.
	var names []string
	for rest := flags.Args(); len(rest) > 0; rest = flags.Args() {
		names = append(names, rest[0])
		if err := flags.Parse(rest[1:]); err != nil {
			return previewInvalid
		}
	}
	if (*file == "") == (len(names) == 0) || (*output != "" && *output != "yaml" && *output != "json") {
		flags.Usage()
		return previewInvalid
	}
	var items []tcrv1.ImagePullSecret
	if *file != "" {
		var err error
		if items, err = readIPS(*file); err != nil {
			fmt.Fprintln(stderr, err)
			return previewInvalid
		}
	}
	cfg, err := restConfig(*kubeconfig, *kubeContext)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return previewFailed
	}
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		panic(err)
	}
	if err := tcrv1.AddToScheme(scheme); err != nil {
		panic(err)
	}
	// controller-runtime's client logs nothing the user needs, but complains on stderr when no
	// logger was set.
	ctrllog.SetLogger(logr.Discard())
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		fmt.Fprintln(stderr, err)
		return previewFailed
	}
	p := &previewer{client: c, namespace: *namespace, stderr: stderr,
		validator: admission.Validator{Secrets: c, Namespace: *namespace, CertSecretName: admission.DefaultSecretName}}

	ctx := context.Background()
	code := previewShown
	doc := previewList{APIVersion: previewAPIVersion, Kind: previewKind, Items: []previewItem{}}
	if *file != "" {
		for i := range items {
			item, itemCode := p.preview(ctx, &items[i], true)
			if item != nil {
				doc.Items = append(doc.Items, *item)
			}
			code = max(code, itemCode)
		}
	}
	for _, name := range names {
		live := &tcrv1.ImagePullSecret{}
		if err := c.Get(ctx, client.ObjectKey{Name: name}, live); err != nil {
			if apierrors.IsNotFound(err) {
				fmt.Fprintf(stderr, "%s: no ImagePullSecret %q in the cluster (to preview one that is not applied yet, use -f FILE)\n", name, name)
				code = max(code, previewInvalid)
			} else {
				fmt.Fprintf(stderr, "%s: reading the ImagePullSecret: %v\n", name, err)
				code = max(code, previewFailed)
			}
			continue
		}
		item, itemCode := p.preview(ctx, live, false)
		if item != nil {
			doc.Items = append(doc.Items, *item)
		}
		code = max(code, itemCode)
	}

	switch *output {
	case "json":
		out, _ := json.MarshalIndent(doc, "", "  ")
		fmt.Fprintf(stdout, "%s\n", out)
	case "yaml":
		out, _ := yaml.Marshal(doc)
		fmt.Fprintf(stdout, "%s", out)
	default:
		for i := range doc.Items {
			if i > 0 {
				fmt.Fprintln(stdout)
			}
			printTable(stdout, &doc.Items[i])
		}
	}
	return code
}

// previewer reads the cluster for preview. Namespaces and ServiceAccounts are read once, when the
// first ImagePullSecret needs them; the Pending Pods once, when the first ImagePullSecret with
// recoverPods needs them, and never otherwise.
type previewer struct {
	client    client.Client
	namespace string // the controller's
	validator admission.Validator
	stderr    io.Writer

	read       bool
	namespaces []*metav1.PartialObjectMetadata
	sas        map[string][]*corev1.ServiceAccount

	podsRead bool
	pods     []controllers.PendingPod
}

// preview previews one ImagePullSecret: fromFile is true for one of FILE, false for one read
// from the cluster. A nil item means nothing could be shown (the error is on stderr).
func (p *previewer) preview(ctx context.Context, ips *tcrv1.ImagePullSecret, fromFile bool) (*previewItem, int) {
	item := &previewItem{Name: ips.Name}

	// The owner: the live ImagePullSecret of this name, whose UID owns its Secrets.
	var uid types.UID
	live := ips
	if fromFile {
		live = &tcrv1.ImagePullSecret{}
		if err := p.client.Get(ctx, client.ObjectKey{Name: ips.Name}, live); err != nil {
			if !apierrors.IsNotFound(err) {
				fmt.Fprintf(p.stderr, "%s: reading the ImagePullSecret: %v\n", ips.Name, err)
				return nil, previewFailed
			}
			live = nil
		}
	}
	if live != nil {
		item.InCluster, uid = true, live.UID
		if !fromFile && !live.DeletionTimestamp.IsZero() {
			item.Notes = append(item.Notes, "it is being deleted: its finalizer removes its Secrets and the references to them")
		}
	}

	// Admission, as the webhook would answer `kubectl apply -f FILE`; for a CR of the cluster, as
	// it would answer that spec today (the controller's Valid condition).
	var warnings []string
	var err error
	if fromFile && live != nil {
		warnings, err = p.validator.ValidateUpdate(ctx, live, ips)
	} else {
		warnings, err = p.validator.ValidateCreate(ctx, ips)
	}
	item.Admission = previewAdmission{Allowed: err == nil, Warnings: warnings}
	if err != nil {
		item.Admission.Refusal = err.Error()
		if fromFile {
			fmt.Fprintf(p.stderr, "%s: the admission webhook would refuse it: %s\n", ips.Name, err)
			return item, previewInvalid
		}
		item.Notes = append(item.Notes, "the admission webhook would refuse this spec today (condition Valid=False); the controller reads it leniently")
	}

	if d := ips.Spec.Delivery; d != "" && d != tcrv1.DeliverySecrets {
		item.Delivery = string(d)
	}
	var password *string
	if it := ips.Spec.Docker.InstanceToken; it != nil {
		// The token is minted by the controller: unknown here, and never minted by the preview.
		item.Credential = p.mintedCredential(ips)
		if note := p.apiKeyNote(ctx, it); note != "" {
			item.Notes = append(item.Notes, note)
		}
	} else {
		var note string
		if password, note = p.password(ctx, ips); note != "" {
			item.Notes = append(item.Notes, note)
		}
	}
	target, err := controllers.NewPreviewTarget(ips, uid, password)
	if err != nil {
		item.Notes = append(item.Notes, "the controller cannot compile this spec and distributes nothing (InvalidSpec): "+err.Error())
		return item, previewInvalid
	}

	if err := p.readCluster(ctx); err != nil {
		fmt.Fprintf(p.stderr, "%s: reading the cluster: %v\n", ips.Name, err)
		return nil, previewFailed
	}
	secrets, err := p.secrets(ctx, target.SecretName())
	if err != nil {
		fmt.Fprintf(p.stderr, "%s: reading the cluster: %v\n", ips.Name, err)
		return nil, previewFailed
	}

	sum := &previewSummary{Secrets: map[string]int{}, NamespacesRead: len(p.namespaces)}
	// previews are kept for Pod recovery, which asks what each namespace selects.
	var previews []controllers.NamespacePreview
	for _, ns := range p.namespaces {
		np := target.Namespace(ns, p.sas[ns.Name], secrets[ns.Name])
		if target.RecoverPods() {
			previews = append(previews, np)
		}
		if np.Terminating {
			sum.NamespacesTerminating++
			continue
		}
		if !np.Selected && np.Secret == controllers.SecretNone && len(np.RemoveReferences) == 0 && len(np.Failures) == 0 {
			continue
		}
		if np.Selected {
			sum.SecretsDesired++
		}
		sum.SAsDesired += len(np.ServiceAccounts)
		if np.Secret != controllers.SecretNone {
			sum.Secrets[string(np.Secret)]++
		}
		sum.ReferencesAdded += len(np.AddReferences)
		sum.ReferencesRemoved += len(np.RemoveReferences)
		row := previewNamespace{Name: np.Namespace, Selected: np.Selected, Secret: string(np.Secret),
			ServiceAccounts: np.ServiceAccounts, AddReferences: np.AddReferences, RemoveReferences: np.RemoveReferences}
		for _, f := range np.Failures {
			row.Failures = append(row.Failures, previewFailure{Reason: f.Reason, Message: f.Message})
		}
		item.Namespaces = append(item.Namespaces, row)
	}
	item.Summary = sum
	if item.Credential != nil && sum.Secrets[string(controllers.SecretUnknown)] > 0 {
		item.Notes = append(item.Notes, "the preview mints no token, so whether the existing Secrets hold the controller's current token is unknown")
	}

	if target.RecoverPods() {
		if err := p.readPods(ctx); err != nil {
			fmt.Fprintf(p.stderr, "%s: reading the cluster: %v\n", ips.Name, err)
			return nil, previewFailed
		}
		rec := target.Recovery(p.pods, previews)
		item.Recovery = &previewRecovery{PendingPodsRead: len(p.pods)}
		for _, pod := range rec.Evict {
			item.Recovery.Evict = append(item.Recovery.Evict, newPreviewPod(pod))
		}
		for _, pod := range rec.Stuck {
			item.Recovery.Stuck = append(item.Recovery.Stuck, newPreviewPod(pod))
		}
	}
	return item, previewShown
}

func newPreviewPod(pod controllers.PodPreview) previewPod {
	out := previewPod{NamespacedName: pod.Namespace + "/" + pod.Name, Reason: pod.Reason}
	if pod.ControllerKind != "" {
		out.Controller = pod.ControllerKind + "/" + pod.ControllerName
	}
	return out
}

// password returns the password the controller would distribute, or nil and why not when it
// cannot be read from here.
func (p *previewer) password(ctx context.Context, ips *tcrv1.ImagePullSecret) (*string, string) {
	ref := ips.Spec.Docker.PasswordSecretRef
	if ref == nil {
		return &ips.Spec.Docker.Password, ""
	}
	unknown := "so whether existing Secrets are up to date is unknown"
	s := &corev1.Secret{}
	if err := p.client.Get(ctx, client.ObjectKey{Namespace: p.namespace, Name: ref.Name}, s); err != nil {
		return nil, fmt.Sprintf("reading Secret %s/%s named by docker.passwordSecretRef: %v; %s", p.namespace, ref.Name, err, unknown)
	}
	if ok, why := tcrv1.PasswordSourceAllowed(s, admission.DefaultSecretName); !ok {
		return nil, fmt.Sprintf("Secret %s/%s named by docker.passwordSecretRef may not be a password source: %s; the controller distributes nothing from it, %s", p.namespace, ref.Name, why, unknown)
	}
	v, ok := s.Data[ref.Key]
	if !ok {
		return nil, fmt.Sprintf("Secret %s/%s named by docker.passwordSecretRef has no key %q; the controller distributes nothing from it, %s", p.namespace, ref.Name, ref.Key, unknown)
	}
	password := string(v)
	return &password, ""
}

// mintedCredential describes the credential the controller mints for the docker.instanceToken of
// ips.
func (p *previewer) mintedCredential(ips *tcrv1.ImagePullSecret) *previewCredential {
	it := ips.Spec.Docker.InstanceToken
	c := &previewCredential{Type: string(it.TokenType()), RegistryID: it.RegistryID, Region: it.Region,
		RotationPolicy: string(ips.Spec.RotationPolicy)}
	if c.RotationPolicy == "" {
		c.RotationPolicy = string(tcrv1.RotationVerified)
	}
	if ref := it.APIKeySecretRef; ref != nil {
		c.APIKeySecret = p.namespace + "/" + ref.Name
	} else {
		c.CloudIdentity = true
	}
	return c
}

// apiKeyNote says why the controller could not mint with the apiKeySecretRef of it, as its
// condition would; "" when it can, or when it has none (the manager's cloud identity cannot be
// checked from here). Only the keys' presence is read, never their values.
func (p *previewer) apiKeyNote(ctx context.Context, it *tcrv1.InstanceToken) string {
	ref := it.APIKeySecretRef
	if ref == nil {
		return ""
	}
	what := fmt.Sprintf("Secret %s/%s named by docker.instanceToken.apiKeySecretRef", p.namespace, ref.Name)
	s := &corev1.Secret{}
	if err := p.client.Get(ctx, client.ObjectKey{Namespace: p.namespace, Name: ref.Name}, s); err != nil {
		if apierrors.IsNotFound(err) {
			return what + " does not exist; the controller mints nothing (" + tcrv1.ReasonAPIKeySecretNotFound + ")"
		}
		return fmt.Sprintf("reading %s: %v", what, err)
	}
	if ok, why := tcrv1.PasswordSourceAllowed(s, admission.DefaultSecretName); !ok {
		return fmt.Sprintf("%s may not be a password source: %s; the controller mints nothing with it (%s)", what, why, tcrv1.ReasonPasswordSourceNotAllowed)
	}
	if len(s.Data["SecretId"]) == 0 || len(s.Data["SecretKey"]) == 0 {
		return what + " needs the keys SecretId and SecretKey; the controller mints nothing with it (" + tcrv1.ReasonAPIKeySecretNotFound + ")"
	}
	return ""
}

// readCluster lists the Namespaces (metadata only, as the controller caches them) and the
// ServiceAccounts, a page at a time.
func (p *previewer) readCluster(ctx context.Context) error {
	if p.read {
		return nil
	}
	newNamespaces := func() *metav1.PartialObjectMetadataList {
		l := &metav1.PartialObjectMetadataList{}
		l.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("NamespaceList"))
		return l
	}
	err := listPages(ctx, p.client, newNamespaces, func(nss *metav1.PartialObjectMetadataList) {
		for i := range nss.Items {
			nss.Items[i].ManagedFields = nil // the largest part of what is kept, and never read
			p.namespaces = append(p.namespaces, &nss.Items[i])
		}
	})
	if err != nil {
		return fmt.Errorf("listing Namespaces: %w", err)
	}
	slices.SortFunc(p.namespaces, func(a, b *metav1.PartialObjectMetadata) int { return strings.Compare(a.Name, b.Name) })

	p.sas = map[string][]*corev1.ServiceAccount{}
	err = listPages(ctx, p.client, func() *corev1.ServiceAccountList { return &corev1.ServiceAccountList{} }, func(sas *corev1.ServiceAccountList) {
		for i := range sas.Items {
			sa := &sas.Items[i]
			sa.ManagedFields, sa.Secrets = nil, nil
			p.sas[sa.Namespace] = append(p.sas[sa.Namespace], sa)
		}
	})
	if err != nil {
		return fmt.Errorf("listing ServiceAccounts: %w", err)
	}
	p.read = true
	return nil
}

// readPods lists the Pending Pods, as the controller's informer does: by field selector, a page
// at a time, each kept in the form recovery reads.
func (p *previewer) readPods(ctx context.Context) error {
	if p.podsRead {
		return nil
	}
	err := listPages(ctx, p.client, func() *corev1.PodList { return &corev1.PodList{} }, func(list *corev1.PodList) {
		for i := range list.Items {
			p.pods = append(p.pods, controllers.NewPendingPod(&list.Items[i]))
		}
	}, client.MatchingFields{"status.phase": string(corev1.PodPending)})
	if err != nil {
		return fmt.Errorf("listing Pending Pods: %w", err)
	}
	p.podsRead = true
	return nil
}

// secrets returns the Secrets named name in every namespace, by namespace. A field selector
// keeps every other Secret off the wire.
func (p *previewer) secrets(ctx context.Context, name string) (map[string]*corev1.Secret, error) {
	out := map[string]*corev1.Secret{}
	err := listPages(ctx, p.client, func() *corev1.SecretList { return &corev1.SecretList{} }, func(list *corev1.SecretList) {
		for i := range list.Items {
			out[list.Items[i].Namespace] = &list.Items[i]
		}
	}, client.MatchingFields{"metadata.name": name})
	if err != nil {
		return nil, fmt.Errorf("listing Secrets %s: %w", name, err)
	}
	return out, nil
}

// listPages lists a page of previewPageSize at a time into a new list from newList, and hands
// each page to each. A new list per page: decoding into the last one would reuse its items.
func listPages[L client.ObjectList](ctx context.Context, c client.Client, newList func() L, each func(L), opts ...client.ListOption) error {
	token := ""
	for {
		list := newList()
		pageOpts := append(slices.Clone(opts), client.Limit(previewPageSize), client.Continue(token))
		if err := c.List(ctx, list, pageOpts...); err != nil {
			return err
		}
		each(list)
		if token = list.GetContinue(); token == "" {
			return nil
		}
	}
}

// printTable prints one item as kubectl prints a table, after its admission answer and notes.
func printTable(w io.Writer, item *previewItem) {
	state := "not in the cluster: previewed as new"
	if item.InCluster {
		state = "in the cluster"
	}
	fmt.Fprintf(w, "ImagePullSecret %s (%s)\n", item.Name, state)
	for _, warning := range item.Admission.Warnings {
		fmt.Fprintf(w, "Warning: %s\n", warning)
	}
	if item.Admission.Refusal != "" {
		fmt.Fprintf(w, "Refused: %s\n", item.Admission.Refusal)
	}
	if c := item.Credential; c != nil {
		key := "API key from Secret " + c.APIKeySecret
		if c.CloudIdentity {
			key = "with the manager's cloud identity (TKE pod identity or the CVM role)"
		}
		fmt.Fprintf(w, "Credential: minted %s token of instance %s (region %s), %s\n", c.Type, c.RegistryID, c.Region, key)
		policy := "a new token is distributed at once"
		if c.RotationPolicy == string(tcrv1.RotationVerified) {
			policy = "a new token the registry rejects is held, and the last accepted one stays distributed"
		}
		fmt.Fprintf(w, "Rotation policy: %s: %s\n", c.RotationPolicy, policy)
	}
	switch tcrv1.Delivery(item.Delivery) {
	case tcrv1.DeliveryCredentialProvider:
		fmt.Fprintf(w, "Delivery: CredentialProvider: no Secret and no reference; the kubelet's credential provider asks the manager (copies left from before are deleted)\n")
	case tcrv1.DeliveryBoth:
		fmt.Fprintf(w, "Delivery: Both: the Secrets and references below, and the kubelet's credential provider\n")
	}
	for _, note := range item.Notes {
		fmt.Fprintf(w, "Note: %s\n", note)
	}
	if item.Summary == nil {
		return
	}
	tw := tabwriter.NewWriter(w, 6, 4, 3, ' ', 0)
	fmt.Fprintln(tw, "NAMESPACE\tSECRET\tSERVICE-ACCOUNTS")
	for _, ns := range item.Namespaces {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", ns.Name, orNone(ns.Secret), serviceAccountsColumn(&ns))
	}
	_ = tw.Flush()
	s := item.Summary
	steps := make([]string, 0, len(s.Secrets))
	for _, step := range slices.Sorted(maps.Keys(s.Secrets)) {
		steps = append(steps, fmt.Sprintf("%s %d", step, s.Secrets[step]))
	}
	fmt.Fprintf(w, "secretsDesired: %d, sAsDesired: %d; Secrets: %s; references: +%d -%d; namespaces: %d read, %d terminating skipped\n",
		s.SecretsDesired, s.SAsDesired, orNone(strings.Join(steps, ", ")), s.ReferencesAdded, s.ReferencesRemoved, s.NamespacesRead, s.NamespacesTerminating)
	for _, ns := range item.Namespaces {
		for _, f := range ns.Failures {
			fmt.Fprintf(w, "%s: %s\n", f.Reason, f.Message)
		}
	}
	if r := item.Recovery; r != nil {
		printRecovery(w, r)
	}
}

// printRecovery prints the Pods recoverPods would evict, then those it would leave stuck, and a
// line counting them.
func printRecovery(w io.Writer, r *previewRecovery) {
	if len(r.Evict)+len(r.Stuck) > 0 {
		tw := tabwriter.NewWriter(w, 6, 4, 3, ' ', 0)
		fmt.Fprintln(tw, "POD\tRECOVERY\tCONTROLLER\tREASON")
		for _, pod := range r.Evict {
			fmt.Fprintf(tw, "%s\tevict\t%s\t%s\n", pod.NamespacedName, orNone(pod.Controller), orNone(pod.Reason))
		}
		for _, pod := range r.Stuck {
			fmt.Fprintf(tw, "%s\tstuck\t%s\t%s\n", pod.NamespacedName, orNone(pod.Controller), orNone(pod.Reason))
		}
		_ = tw.Flush()
	}
	fmt.Fprintf(w, "recoverPods: evict %d, stuck %d; Pending Pods: %d read\n", len(r.Evict), len(r.Stuck), r.PendingPodsRead)
}

// serviceAccountsColumn lists the selected ServiceAccounts, "+" before those that would gain the
// reference, and "-" before those that would lose it.
func serviceAccountsColumn(ns *previewNamespace) string {
	type entry struct{ name, mark string }
	var entries []entry
	for _, sa := range ns.ServiceAccounts {
		mark := ""
		if slices.Contains(ns.AddReferences, sa) {
			mark = "+"
		}
		entries = append(entries, entry{sa, mark})
	}
	for _, sa := range ns.RemoveReferences {
		entries = append(entries, entry{sa, "-"})
	}
	slices.SortFunc(entries, func(a, b entry) int { return strings.Compare(a.name, b.name) })
	out := make([]string, len(entries))
	for i, e := range entries {
		out[i] = e.mark + e.name
	}
	return orNone(strings.Join(out, ","))
}

func orNone(s string) string {
	if s == "" {
		return "<none>"
	}
	return s
}
