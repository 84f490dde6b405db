// awscall: one call of an AWS API through the AWS SDK for Go v2, as migrated code makes it.
//
//	awscall <operation> '<input JSON>'
//
// The input JSON is the operation's input struct (the SDK's own field names). The client comes from
// config.LoadDefaultConfig, so the endpoint is the SDK's standard setting (AWS_ENDPOINT_URL_EVENTBRIDGE,
// AWS_ENDPOINT_URL_SQS, AWS_ENDPOINT_URL_SES, AWS_ENDPOINT_URL_SESV2) and the credentials are
// AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY. Prints {"output": ...} or {"error": {"code", "message",
// "status"}} as one JSON line; exits 0 either way (1 only when the call could not be made at all).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	"github.com/aws/aws-sdk-go-v2/service/ses"
	"github.com/aws/aws-sdk-go-v2/service/sesv2"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/smithy-go"
)

func decode[T any](raw string) (*T, error) {
	in := new(T)
	if err := json.Unmarshal([]byte(raw), in); err != nil {
		return nil, fmt.Errorf("input: %w", err)
	}
	return in, nil
}

func call(ctx context.Context, cfg aws.Config, op, raw string) (any, error) {
	switch op {
	case "PutEvents":
		in, err := decode[eventbridge.PutEventsInput](raw)
		if err != nil {
			return nil, err
		}
		return eventbridge.NewFromConfig(cfg).PutEvents(ctx, in)
	case "GetQueueUrl":
		in, err := decode[sqs.GetQueueUrlInput](raw)
		if err != nil {
			return nil, err
		}
		return sqs.NewFromConfig(cfg).GetQueueUrl(ctx, in)
	case "SendMessage":
		in, err := decode[sqs.SendMessageInput](raw)
		if err != nil {
			return nil, err
		}
		return sqs.NewFromConfig(cfg).SendMessage(ctx, in)
	case "SendMessageBatch":
		in, err := decode[sqs.SendMessageBatchInput](raw)
		if err != nil {
			return nil, err
		}
		return sqs.NewFromConfig(cfg).SendMessageBatch(ctx, in)
	case "SendEmail":
		in, err := decode[ses.SendEmailInput](raw)
		if err != nil {
			return nil, err
		}
		return ses.NewFromConfig(cfg).SendEmail(ctx, in)
	case "SendRawEmail":
		in, err := decode[ses.SendRawEmailInput](raw)
		if err != nil {
			return nil, err
		}
		return ses.NewFromConfig(cfg).SendRawEmail(ctx, in)
	case "v2.SendEmail":
		in, err := decode[sesv2.SendEmailInput](raw)
		if err != nil {
			return nil, err
		}
		return sesv2.NewFromConfig(cfg).SendEmail(ctx, in)
	}
	return nil, fmt.Errorf("unknown operation %q", op)
}

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: awscall <operation> '<input JSON>'")
		os.Exit(2)
	}
	ctx := context.Background()
	cfg, err := config.LoadDefaultConfig(ctx, config.WithRetryMaxAttempts(1))
	if err != nil {
		fmt.Fprintln(os.Stderr, "config:", err)
		os.Exit(1)
	}
	out, err := call(ctx, cfg, os.Args[1], os.Args[2])
	result := map[string]any{"output": out}
	if err != nil {
		var api smithy.APIError
		if !errors.As(err, &api) {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		status := 0
		var resp *awshttp.ResponseError
		if errors.As(err, &resp) {
			status = resp.HTTPStatusCode()
		}
		result = map[string]any{"error": map[string]any{
			"code": api.ErrorCode(), "message": api.ErrorMessage(), "status": status,
		}}
	}
	line, err := json.Marshal(result)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println(string(line))
}
