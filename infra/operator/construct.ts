/**
 * A typed cdk8s construct for authoring a RegistrationService in TypeScript: the spec's own types,
 * and the spec's own validation at synth time (a bad spec fails `cdk8s synth` with every field
 * problem, before the API server would refuse it at admission).
 *
 *   new RegistrationServiceResource(chart, 'accounts', {
 *     metadata: { name: 'accounts', namespace: 'team-a' },
 *     spec: { image: 'kreg/registration:1.2.3', database: { mode: 'embedded', storage: '1Gi' } },
 *   });
 */
import { ApiObject, type ApiObjectMetadata } from 'cdk8s';
import type { Construct } from 'constructs';
import { parseSpec, type RegistrationSpecInput } from '../spec.js';
import { API_VERSION, KIND } from './crd.js';

export interface RegistrationServiceResourceSpec extends RegistrationSpecInput {
  /** Stop reconciling (drift is not corrected) until set back to false. */
  suspend?: boolean;
  /** What happens to the embedded database's claim when the resource is deleted. Default Retain. */
  dataDeletionPolicy?: 'Retain' | 'Delete';
}

export interface RegistrationServiceResourceProps {
  metadata?: ApiObjectMetadata;
  spec: RegistrationServiceResourceSpec;
}

export class RegistrationServiceResource extends ApiObject {
  constructor(scope: Construct, id: string, props: RegistrationServiceResourceProps) {
    const { suspend, dataDeletionPolicy, ...spec } = props.spec;
    parseSpec(spec, `spec of RegistrationService "${props.metadata?.name ?? id}"`);
    super(scope, id, {
      apiVersion: API_VERSION,
      kind: KIND,
      ...(props.metadata ? { metadata: props.metadata } : {}),
      spec: { ...spec, ...(suspend !== undefined ? { suspend } : {}), ...(dataDeletionPolicy ? { dataDeletionPolicy } : {}) },
    });
  }
}
