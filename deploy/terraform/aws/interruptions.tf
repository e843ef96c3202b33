# Spot interruption warnings and rebalance recommendations for the cluster's
# instances, delivered to a queue k3scale reads (config `interruptions`):
# it drains the node ahead of the two-minute deadline and launches a
# replacement at once.
resource "aws_sqs_queue" "interruptions" {
  name                      = "${var.cluster_name}-interruptions"
  message_retention_seconds = 300 # a notice older than its deadline is moot
  sqs_managed_sse_enabled   = true
}

resource "aws_cloudwatch_event_rule" "interruptions" {
  for_each = {
    spot      = "EC2 Spot Instance Interruption Warning"
    rebalance = "EC2 Instance Rebalance Recommendation"
  }
  name          = "${var.cluster_name}-${each.key}"
  description   = "${each.value} → k3scale"
  event_pattern = jsonencode({ source = ["aws.ec2"], "detail-type" = [each.value] })
}

resource "aws_cloudwatch_event_target" "interruptions" {
  for_each = aws_cloudwatch_event_rule.interruptions
  rule     = each.value.name
  arn      = aws_sqs_queue.interruptions.arn
}

data "aws_iam_policy_document" "interruptions_queue" {
  statement {
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.interruptions.arn]
    principals {
      type        = "Service"
      identifiers = ["events.amazonaws.com"]
    }
    condition {
      test     = "ArnEquals"
      variable = "aws:SourceArn"
      values   = [for r in aws_cloudwatch_event_rule.interruptions : r.arn]
    }
  }
}

resource "aws_sqs_queue_policy" "interruptions" {
  queue_url = aws_sqs_queue.interruptions.id
  policy    = data.aws_iam_policy_document.interruptions_queue.json
}
