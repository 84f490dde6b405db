package main

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambda"
)

// Order represents an order.
type Order struct {
	ID     string
	UserID string
	Total  float64
}

// ProcessOrder handles SQS events for order processing.
func ProcessOrder(ctx context.Context, sqsEvent events.SQSEvent) error {
	for _, record := range sqsEvent.Records {
		var order Order
		if err := json.Unmarshal([]byte(record.Body), &order); err != nil {
			return fmt.Errorf("unmarshaling order: %w", err)
		}

		// Process order
		if err := orderService.Process(ctx, &order); err != nil {
			return fmt.Errorf("processing order: %w", err)
		}

		// Emit event for other functions
		event := map[string]interface{}{
			"Source":     "orders",
			"DetailType": "OrderProcessed",
			"Detail": map[string]interface{}{
				"orderId": order.ID,
			},
		}

		if err := eventBridge.PutEvents(ctx, event); err != nil {
			return fmt.Errorf("publishing event: %w", err)
		}
	}

	return nil
}

func main() {
	lambda.Start(ProcessOrder)
}
