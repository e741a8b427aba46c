/**
 * The aws_iid block of a join rule (registered with join/rules.ts, so `sigil ctl apply` refuses
 * a malformed one):
 *
 *   kind: join_rule
 *   name: ec2
 *   spec:
 *     method: aws_iid
 *     bot: gw
 *     aws_iid:
 *       allow:                                   # required: which instances may join
 *         - account_id: "123456789012"           # required in every entry, exact (no globs)
 *           region: [us-east-1, eu-west-1]       # optional, each field a value or a list,
 *           instance_id: "i-0abc*"               #   globs (* ?) allowed
 *           image_id: ami-0123456789abcdef0
 *           instance_type: "t3.*"
 *       certs_dir: /etc/sigil/aws-certs          # optional: replaces the bundled AWS certificates
 *       first_join_within: 15m                   # optional: a first join (no binding yet) only
 *                                                #   this soon after the instance launched
 */
import { z } from 'zod';
import { exactSchema, patternSchema } from '../allow-match.js';
import { absolutePathField, durationField } from '../rule-fields.js';

export const awsAllowEntrySchema = z.strictObject({
  account_id: exactSchema(/^\d{12}$/, 'account_id is a 12-digit AWS account id (no wildcards)'),
  region: patternSchema.optional(),
  instance_id: patternSchema.optional(),
  image_id: patternSchema.optional(),
  instance_type: patternSchema.optional(),
});
export type AwsAllowEntry = z.infer<typeof awsAllowEntrySchema>;

/** Allow-entry field → the fact it tests (facts are what the audit row records). */
export const AWS_ALLOW_FIELDS: Record<string, string> = {
  account_id: 'aws_account_id',
  region: 'aws_region',
  instance_id: 'aws_instance_id',
  image_id: 'aws_image_id',
  instance_type: 'aws_instance_type',
};

export const awsRuleSchema = z.strictObject({
  allow: z.array(awsAllowEntrySchema).min(1, 'allow needs at least one entry (an AWS account id at least)').max(1000),
  certs_dir: absolutePathField.optional(),
  first_join_within: durationField.optional(),
});
export type AwsRule = z.infer<typeof awsRuleSchema>;
