// The benchmark's Go hello handler: aws-lambda-go's lambda.Start with an API Gateway proxy handler that
// answers 200 "hello" (bench/lambda_bridge.py serves it through kfaas's Runtime API bridge).
package main

import (
	"context"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambda"
)

func hello(_ context.Context, _ events.APIGatewayProxyRequest) (events.APIGatewayProxyResponse, error) {
	return events.APIGatewayProxyResponse{
		StatusCode: 200,
		Headers:    map[string]string{"Content-Type": "text/plain"},
		Body:       "hello",
	}, nil
}

func main() {
	lambda.Start(hello)
}
