/**
 * The environment's Namespace, in a chart of its own so `cdk8s synth` writes it to the first file
 * (`0000-…`) and `kubectl apply -f dist/` creates it before anything that lives in it.
 */
import { Chart } from 'cdk8s';
import { k8s } from 'cdk8s-plus-27';
import type { Construct } from 'constructs';
import { MANAGED_BY, PART_OF } from './common.js';

export interface NamespaceChartProps {
  namespace: string;
  environment: string;
}

export class NamespaceChart extends Chart {
  readonly namespaceName: string;

  constructor(scope: Construct, id: string, props: NamespaceChartProps) {
    super(scope, id, { disableResourceNameHashes: true });
    this.namespaceName = props.namespace;
    new k8s.KubeNamespace(this, 'namespace', {
      metadata: {
        name: props.namespace,
        labels: {
          'app.kubernetes.io/part-of': PART_OF,
          'app.kubernetes.io/managed-by': MANAGED_BY,
          'kreg.dev/environment': props.environment,
          // Pod Security "restricted" is enforced: the charts comply, and anything that does not is refused.
          'pod-security.kubernetes.io/enforce': 'restricted',
          'pod-security.kubernetes.io/enforce-version': 'latest',
          'pod-security.kubernetes.io/warn': 'restricted',
          'pod-security.kubernetes.io/warn-version': 'latest',
        },
      },
    });
  }
}
