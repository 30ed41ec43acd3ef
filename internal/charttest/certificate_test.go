package charttest

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apiextensions-apiserver/pkg/apis/apiextensions"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	structuralschema "k8s.io/apiextensions-apiserver/pkg/apiserver/schema"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/pruning"
	"k8s.io/kube-openapi/pkg/validation/strfmt"
	"k8s.io/kube-openapi/pkg/validation/validate"
	"sigs.k8s.io/yaml"
)

// crdValidator checks objects against one version of a CustomResourceDefinition the way the
// API server does without CEL: fields the structural schema does not know (which the server
// would silently prune, and `kubectl --validate=strict` refuses) and the OpenAPI value
// validation (types, required fields, patterns, enums).
type crdValidator struct {
	structural *structuralschema.Structural
	validator  *validate.SchemaValidator
}

func loadCRD(t *testing.T, path, version string) *crdValidator {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	var crd apiextensionsv1.CustomResourceDefinition
	require.NoError(t, yaml.UnmarshalStrict(b, &crd), path)
	for _, v := range crd.Spec.Versions {
		if v.Name != version {
			continue
		}
		require.NotNil(t, v.Schema, "%s %s has no schema", path, version)
		var internal apiextensions.JSONSchemaProps
		require.NoError(t, apiextensionsv1.Convert_v1_JSONSchemaProps_To_apiextensions_JSONSchemaProps(v.Schema.OpenAPIV3Schema, &internal, nil))
		s, err := structuralschema.NewStructural(&internal)
		require.NoError(t, err)
		return &crdValidator{structural: s, validator: validate.NewSchemaValidator(s.ToKubeOpenAPI(), nil, "", strfmt.Default)}
	}
	t.Fatalf("%s has no version %s", path, version)
	return nil
}

// problems lists what the API server would refuse or drop in obj.
func (c *crdValidator) problems(t *testing.T, obj any) []string {
	t.Helper()
	b, err := json.Marshal(obj)
	require.NoError(t, err)
	var u map[string]any
	require.NoError(t, json.Unmarshal(b, &u))
	var out []string
	for _, p := range pruning.PruneWithOptions(u, c.structural, true, structuralschema.UnknownFieldPathOptions{TrackUnknownFieldPaths: true}) {
		out = append(out, "unknown field "+p)
	}
	for _, e := range c.validator.Validate(u).Errors {
		out = append(out, e.Error())
	}
	return out
}

var certificateCRD = filepath.Join("testdata", "crds", "cert-manager.io_certificates.yaml")

func TestCertManagerCertificate(t *testing.T) {
	crd := loadCRD(t, certificateCRD, "v1")

	t.Run("the validator refuses what the API server refuses", func(t *testing.T) {
		bad := map[string]any{"apiVersion": "cert-manager.io/v1", "kind": "Certificate", "metadata": map[string]any{"name": "x"},
			"spec": map[string]any{"secretName": "x", "issuerRef": map[string]any{"kind": "Issuer"}, "dnsName": []string{"a"}}}
		p := strings.Join(crd.problems(t, bad), "\n")
		assert.Contains(t, p, "unknown field spec.dnsName")
		assert.Contains(t, p, "spec.issuerRef.name in body is required")
	})

	t.Run("own Secret", func(t *testing.T) {
		r := render(t, "pico", "prod", values(t, `
clusterDomain: cluster.local
adminService: {enabled: true}
tls:
  certManager:
    issuerRef: {name: pico-ca, kind: ClusterIssuer}
    duration: 2160h
    renewBefore: 360h
    dnsNames: [tunnel.example.com]
proxy: {tls: {enabled: true}}
upstream: {tls: {enabled: true}}
`))
		cert := get[Certificate](t, r, "Certificate", "pico")
		assert.Empty(t, crd.problems(t, cert), "the Certificate must pass cert-manager's CRD schema")
		assert.Equal(t, "pico-tls", cert.Spec.SecretName, "with no tls.existingSecret the chart names the Secret")
		assert.Contains(t, r.Notes, "cert-manager issues the TLS Secret pico-tls (ClusterIssuer pico-ca); the pods start once it\nexists:\n  kubectl -n prod get certificate pico\n\nCheck that they form one cluster:")
		assert.Equal(t, "pico-ca", cert.Spec.IssuerRef.Name)
		assert.Equal(t, "ClusterIssuer", cert.Spec.IssuerRef.Kind)
		assert.Equal(t, "cert-manager.io", cert.Spec.IssuerRef.Group)
		assert.Equal(t, "2160h", cert.Spec.Duration)
		assert.Equal(t, "360h", cert.Spec.RenewBefore)
		var want []string
		for _, svc := range []string{"pico", "pico-headless", "pico-admin"} {
			want = append(want, svc, svc+".prod", svc+".prod.svc", svc+".prod.svc.cluster.local")
		}
		want = append(want, "*.pico-headless.prod.svc", "*.pico-headless.prod.svc.cluster.local", "tunnel.example.com")
		assert.ElementsMatch(t, want, cert.Spec.DNSNames)

		// Every Service of the chart is named, and so is every member's name.
		for _, o := range r.Objects {
			if s, ok := o.Value.(*corev1.Service); ok {
				assert.Contains(t, cert.Spec.DNSNames, s.Name+".prod.svc", "Service %s", s.Name)
			}
		}
		// The chart mounts the Secret the Certificate writes, and its clients trust its CA.
		sts := get[appsv1.StatefulSet](t, r, "StatefulSet", "pico")
		assert.Equal(t, "pico-tls", volumesByName(sts.Spec.Template.Spec.Volumes)["tls"].Secret.SecretName)
		cfg := baseConfig(t, get[corev1.ConfigMap](t, r, "ConfigMap", "pico"))
		assert.Equal(t, "/etc/pico-tls/tls.crt", lookup(t, cfg, "proxy.tls.cert"))
		test := get[corev1.Pod](t, r, "Pod", "pico-test")
		assert.Equal(t, "pico-tls", volumesByName(test.Spec.Volumes)["proxy-ca"].Secret.SecretName)
		for _, arg := range test.Spec.Containers[0].Args {
			if strings.HasPrefix(arg, "https://") {
				host := strings.Split(strings.TrimPrefix(arg, "https://"), ":")[0]
				assert.True(t, certCovers(cert.Spec.DNSNames, host), "helm test verifies %s, which the Certificate must list", host)
			}
		}
	})

	t.Run("existing Secret name", func(t *testing.T) {
		r := render(t, "edge", "apps", values(t, "tls: {existingSecret: edge-certs, certManager: {issuerRef: {name: ca}}}"))
		cert := get[Certificate](t, r, "Certificate", "edge-pico")
		assert.Empty(t, crd.problems(t, cert))
		assert.Equal(t, "edge-certs", cert.Spec.SecretName)
		assert.Equal(t, "Issuer", cert.Spec.IssuerRef.Kind)
		assert.Empty(t, cert.Spec.Duration)
		assert.NotContains(t, cert.Spec.DNSNames, "edge-pico-admin", "no admin Service, no admin name")
	})

	t.Run("off by default", func(t *testing.T) {
		r := render(t, "pico", "default", values(t, "tls: {existingSecret: pico-tls}"))
		assert.Nil(t, r.Find("Certificate", "pico"))
	})

	t.Run("bad values", func(t *testing.T) {
		for _, v := range []string{
			"tls: {certManager: {duration: 90d}}",
			"tls: {certManager: {issuerRef: {name: ca, kind: ''}}}",
			"tls: {certManager: {dnsNames: ['https://x']}}",
			"tls: {certManager: {isuerRef: {name: ca}}}",
		} {
			_, err := Render(chartDir, "pico", "default", values(t, v))
			assert.ErrorContains(t, err, "values don't meet the specifications of the schema", v)
		}
	})
}

// certCovers reports whether a certificate's DNS names cover host (one wildcard label).
func certCovers(names []string, host string) bool {
	for _, n := range names {
		if n == host {
			return true
		}
		if rest, ok := strings.CutPrefix(n, "*."); ok {
			if i := strings.Index(host, "."); i > 0 && host[i+1:] == rest {
				return true
			}
		}
	}
	return false
}
