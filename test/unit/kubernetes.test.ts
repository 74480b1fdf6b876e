// The kustomize base in deploy/kubernetes, checked as kustomize and the cluster would: every document
// parses, every reference between them resolves, the configuration it ships loads with exactly the
// environment the Deployment provides, the probes hit routes the app serves, and the paths and user
// agree with the Dockerfile. When kubectl is on PATH, `kubectl kustomize` renders it too.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import request from 'supertest';
import { describe, expect, it } from 'vitest';
import { parseAllDocuments, parse } from 'yaml';
import { parseConfig } from '../../shared/config-file.ts';
import { makeApp } from '../helpers/app.ts';

const root = fileURLToPath(new URL('../../', import.meta.url));
const base = path.join(root, 'deploy', 'kubernetes');

type Doc = { apiVersion: string; kind: string; metadata: { name: string; namespace?: string; labels?: Record<string, string> }; [k: string]: any };

function readDocs(file: string): Doc[] {
  return parseAllDocuments(readFileSync(path.join(base, file), 'utf8'), { uniqueKeys: true }).map((d) => {
    expect(d.errors, file).toEqual([]);
    return d.toJS() as Doc;
  });
}

const kustomization = parse(readFileSync(path.join(base, 'kustomization.yaml'), 'utf8')) as {
  namespace: string;
  labels: Array<{ pairs: Record<string, string>; includeSelectors: boolean }>;
  resources: string[];
  configMapGenerator: Array<{ name: string; files: string[] }>;
  images: Array<{ name: string; newTag: string }>;
};
const docs = kustomization.resources.flatMap(readDocs);
const one = (kind: string) => {
  const found = docs.filter((d) => d.kind === kind);
  expect(found, kind).toHaveLength(1);
  return found[0]!;
};
const commonLabels = Object.assign({}, ...kustomization.labels.map((l) => l.pairs)) as Record<string, string>;
const deployment = one('Deployment');
const pod = deployment.spec.template.spec;
const container = pod.containers[0];
const secret = readDocs('secret.example.yaml')[0]!;
const dockerfile = readFileSync(path.join(root, 'Dockerfile'), 'utf8');

describe('the Kubernetes base (deploy/kubernetes)', () => {
  it('lists only files that exist, each a well-formed object with a unique kind and name', () => {
    for (const file of [...kustomization.resources, ...kustomization.configMapGenerator.flatMap((g) => g.files)]) {
      expect(existsSync(path.join(base, file)), file).toBe(true);
    }
    for (const d of docs) {
      expect(d.apiVersion, JSON.stringify(d.metadata)).toMatch(/^[a-z0-9./]+$/);
      expect(d.metadata.name).toMatch(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/);
    }
    const ids = docs.map((d) => `${d.kind}/${d.metadata.name}`);
    expect(new Set(ids).size).toBe(ids.length);
    expect(kustomization.namespace).toBe(one('Namespace').metadata.name);
  });

  it('runs one replica that lets go of the volume before the next starts, with the image the kustomization names', () => {
    expect(deployment.spec.replicas).toBe(1);
    expect(deployment.spec.strategy.type).toBe('Recreate');
    expect(one('PersistentVolumeClaim').spec.accessModes).toEqual(['ReadWriteOnce']);
    const [imageName] = String(container.image).split(':');
    expect(kustomization.images.map((i) => i.name)).toContain(imageName);
  });

  it('resolves every reference: service account, volumes, secret keys, selectors, ports, ServiceMonitor', () => {
    expect(pod.serviceAccountName).toBe(one('ServiceAccount').metadata.name);
    const podLabels = { ...deployment.spec.template.metadata.labels, ...commonLabels };
    expect(podLabels).toMatchObject(deployment.spec.selector.matchLabels);

    const volumes = new Map<string, any>(pod.volumes.map((v: any) => [v.name, v]));
    for (const mount of container.volumeMounts) expect(volumes.has(mount.name), mount.name).toBe(true);
    expect(volumes.get('data').persistentVolumeClaim.claimName).toBe(one('PersistentVolumeClaim').metadata.name);
    expect(kustomization.configMapGenerator.map((g) => g.name)).toContain(volumes.get('config').configMap.name);

    expect(container.envFrom.map((e: any) => e.secretRef.name)).toEqual([secret.metadata.name]);
    expect(secret.metadata.namespace).toBe(kustomization.namespace);

    const service = one('Service');
    expect(podLabels).toMatchObject(service.spec.selector);
    const portNames = container.ports.map((p: any) => p.name);
    for (const p of service.spec.ports) expect(portNames).toContain(p.targetPort);

    const monitor = one('ServiceMonitor');
    expect({ ...service.metadata.labels, ...commonLabels }).toMatchObject(monitor.spec.selector.matchLabels);
    for (const e of monitor.spec.endpoints) expect(service.spec.ports.map((p: any) => p.name)).toContain(e.port);
  });

  it('ships a configuration that loads with exactly the variables the Secret provides, on the mounted paths', () => {
    const [generator] = kustomization.configMapGenerator;
    const text = readFileSync(path.join(base, generator!.files[0]!), 'utf8');
    const mount = container.volumeMounts.find((m: any) => m.name === 'config').mountPath;
    const configPath = container.env.find((e: any) => e.name === 'IMAGE_UPDATER_CONFIG').value;
    expect(configPath).toBe(`${mount}/${generator!.files[0]}`);
    expect(dockerfile).toContain(`IMAGE_UPDATER_CONFIG=${configPath}`);

    const provided = { ...secret.stringData } as Record<string, string>;
    // The variables its values use (comments may mention ${NAME} as prose).
    const used = [...JSON.stringify(parse(text)).matchAll(/\$\{([A-Z0-9_]+)\}/g)].map((m) => m[1]!);
    expect(new Set(used)).toEqual(new Set(Object.keys(provided)));
    const config = parseConfig(text, configPath, provided);

    const data = container.volumeMounts.find((m: any) => m.name === 'data').mountPath;
    expect(config.database.path.startsWith(`${data}/`)).toBe(true);
    expect(config.syncer.workDir.startsWith(`${data}/`)).toBe(true);
    expect(dockerfile).toContain(`VOLUME ["${data}"]`);
    expect(container.ports.find((p: any) => p.name === 'http').containerPort).toBe(config.server.port);
    expect(config.server.host).toBe('0.0.0.0');
    // Without one of them the service refuses to start, naming the variable.
    const { GIT_TOKEN: _omitted, ...missing } = provided;
    expect(() => parseConfig(text, configPath, missing)).toThrow(/GIT_TOKEN/);
  });

  it('probes routes the app serves, and lets Prometheus scrape /metrics', async () => {
    const { app } = makeApp();
    const probes = [container.startupProbe, container.readinessProbe, container.livenessProbe];
    for (const probe of probes) {
      expect(container.ports.map((p: any) => p.name)).toContain(probe.httpGet.port);
      expect((await request(app).get(probe.httpGet.path)).status, probe.httpGet.path).toBe(200);
    }
    for (const e of one('ServiceMonitor').spec.endpoints) {
      const res = await request(app).get(e.path);
      expect(res.status).toBe(200);
      expect(res.text).toContain('# TYPE image_updater_');
    }
  });

  it('runs as the image user with a read-only root, no privileges and no API token', () => {
    const user = /^USER (\d+):(\d+)$/m.exec(dockerfile);
    expect(user).not.toBeNull();
    expect(pod.securityContext).toMatchObject({ runAsNonRoot: true, runAsUser: Number(user![1]), runAsGroup: Number(user![2]), fsGroup: Number(user![2]) });
    expect(container.securityContext).toMatchObject({ allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ['ALL'] } });
    expect(pod.automountServiceAccountToken).toBe(false);
    expect(container.resources.limits.memory).toBeDefined();
    expect(container.volumeMounts.map((m: any) => m.mountPath)).toContain('/tmp');
  });

  const kubectl = spawnSync('kubectl', ['version', '--client'], { encoding: 'utf8' });
  it.skipIf(kubectl.status !== 0)('renders with kubectl kustomize, the ConfigMap name hashed and referenced', () => {
    const out = spawnSync('kubectl', ['kustomize', base], { encoding: 'utf8' });
    expect(out.stderr).toBe('');
    expect(out.status).toBe(0);
    const rendered = parseAllDocuments(out.stdout).map((d) => d.toJS() as Doc);
    const configMap = rendered.find((d) => d.kind === 'ConfigMap')!;
    expect(configMap.metadata.name).toMatch(/^image-updater-config-[a-z0-9]{10}$/);
    const renderedDeployment = rendered.find((d) => d.kind === 'Deployment')!;
    const volume = renderedDeployment.spec.template.spec.volumes.find((v: any) => v.name === 'config');
    expect(volume.configMap.name).toBe(configMap.metadata.name);
    expect(renderedDeployment.spec.template.spec.containers[0].image).toBe(`${kustomization.images[0]!.name}:${kustomization.images[0]!.newTag}`);
    for (const d of rendered) if (d.kind !== 'Namespace') expect(d.metadata.namespace, d.kind).toBe(kustomization.namespace);
  });
});
