data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}

locals {
  arn_prefix = "arn:${data.aws_partition.current.partition}"
  account    = data.aws_caller_identity.current.account_id
}

data "aws_iam_policy_document" "ec2_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ec2.amazonaws.com"]
    }
  }
}

# Every node (server or agent): read the join token, nothing else. Servers
# also read the external datastore's URL, if any.
resource "aws_iam_role" "node" {
  name               = "${var.cluster_name}-node"
  assume_role_policy = data.aws_iam_policy_document.ec2_assume.json
}

data "aws_iam_policy_document" "read_token" {
  statement {
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [aws_secretsmanager_secret.k3s_token.arn]
  }
}

resource "aws_iam_role_policy" "node_read_token" {
  name   = "read-k3s-token"
  role   = aws_iam_role.node.id
  policy = data.aws_iam_policy_document.read_token.json
}

resource "aws_iam_role_policy_attachment" "node_ssm" {
  role       = aws_iam_role.node.name
  policy_arn = "${local.arn_prefix}:iam::aws:policy/AmazonSSMManagedInstanceCore"
}

resource "aws_iam_instance_profile" "node" {
  name = "${var.cluster_name}-node"
  role = aws_iam_role.node.name
}

# k3scale: exactly the calls it makes (RunInstances, CreateTags at launch,
# DescribeInstances, TerminateInstances; its interruption queue; DynamoDB
# item calls on its table),
# scoped by the cluster tag where IAM can check it.
data "aws_iam_policy_document" "k3scale" {
  statement {
    sid     = "LaunchTaggedAgents"
    actions = ["ec2:RunInstances"]
    resources = [
      "${local.arn_prefix}:ec2:${var.region}:${local.account}:instance/*",
      "${local.arn_prefix}:ec2:${var.region}:${local.account}:volume/*",
    ]
    condition {
      test     = "StringEquals"
      variable = "aws:RequestTag/k3scale.io/cluster"
      values   = [var.cluster_name]
    }
  }
  statement {
    sid     = "LaunchFromOurTemplateAndNetwork"
    actions = ["ec2:RunInstances"]
    resources = concat(
      [
        aws_launch_template.agents.arn,
        aws_security_group.agents.arn,
        "${local.arn_prefix}:ec2:${var.region}:${local.account}:network-interface/*",
        "${local.arn_prefix}:ec2:${var.region}::image/*",
      ],
      aws_subnet.private[*].arn,
    )
  }
  statement {
    sid       = "TagOnlyAtLaunch"
    actions   = ["ec2:CreateTags"]
    resources = ["${local.arn_prefix}:ec2:${var.region}:${local.account}:*/*"]
    condition {
      test     = "StringEquals"
      variable = "ec2:CreateAction"
      values   = ["RunInstances"]
    }
  }
  statement {
    sid       = "TerminateOnlyOurs"
    actions   = ["ec2:TerminateInstances"]
    resources = ["${local.arn_prefix}:ec2:${var.region}:${local.account}:instance/*"]
    condition {
      test     = "StringEquals"
      variable = "aws:ResourceTag/k3scale.io/cluster"
      values   = [var.cluster_name]
    }
  }
  statement {
    sid       = "DescribeCannotBeScoped"
    actions   = ["ec2:DescribeInstances"]
    resources = ["*"]
  }
  statement {
    sid       = "PassTheNodeRole"
    actions   = ["iam:PassRole"]
    resources = [aws_iam_role.node.arn]
  }
  statement {
    sid       = "InterruptionNotices"
    actions   = ["sqs:ReceiveMessage", "sqs:DeleteMessage"]
    resources = [aws_sqs_queue.interruptions.arn]
  }
  statement {
    sid = "StateTable"
    actions = [
      "dynamodb:GetItem",
      "dynamodb:PutItem",
      "dynamodb:UpdateItem",
      "dynamodb:DeleteItem",
      "dynamodb:Query",
    ]
    resources = [aws_dynamodb_table.k3scale.arn]
  }
}

resource "aws_iam_policy" "k3scale" {
  name        = "${var.cluster_name}-k3scale"
  description = "k3scale: launch, list and terminate tagged K3s agents; its DynamoDB state"
  policy      = data.aws_iam_policy_document.k3scale.json
}

# k3scale runs on the servers (control-plane nodes, never removed), with
# the servers' instance role through IMDSv2 (hop limit 2 for pods).
resource "aws_iam_role" "server" {
  name               = "${var.cluster_name}-server"
  assume_role_policy = data.aws_iam_policy_document.ec2_assume.json
}

data "aws_iam_policy_document" "server_secrets" {
  statement {
    actions   = ["secretsmanager:GetSecretValue"]
    resources = concat([aws_secretsmanager_secret.k3s_token.arn], aws_secretsmanager_secret.datastore[*].arn)
  }
}

resource "aws_iam_role_policy" "server_read_token" {
  name   = "read-k3s-secrets"
  role   = aws_iam_role.server.id
  policy = data.aws_iam_policy_document.server_secrets.json
}

resource "aws_iam_role_policy_attachment" "server_k3scale" {
  role       = aws_iam_role.server.name
  policy_arn = aws_iam_policy.k3scale.arn
}

resource "aws_iam_role_policy_attachment" "server_ssm" {
  role       = aws_iam_role.server.name
  policy_arn = "${local.arn_prefix}:iam::aws:policy/AmazonSSMManagedInstanceCore"
}

resource "aws_iam_instance_profile" "server" {
  name = "${var.cluster_name}-server"
  role = aws_iam_role.server.name
}
