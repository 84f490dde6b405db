package main

// The orderService and eventBridge the seed's ProcessOrder calls: the order stored once in MongoDB (the
// collection TABLE_NAME, default orders), and its event put with EventBridge's PutEvents through the AWS SDK
// for Go v2, as on AWS. On kfaas the SDK's standard setting AWS_ENDPOINT_URL_EVENTBRIDGE (set for every
// kind: lambda function) points it at kfaas's AWS API endpoints, which put the event on the broker as a
// CloudEvent: type = DetailType, source = Source, data = Detail.

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge/types"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"kfaas.example/aws-lambda-go/internal/store"
)

type mongoOrders struct{ db *store.DB }

var orderService = &mongoOrders{db: store.FromEnv("orders")}

// Process stores the order under its id, once: a redelivered order changes nothing.
func (s *mongoOrders) Process(ctx context.Context, order *Order) error {
	if order.ID == "" {
		return fmt.Errorf("order without an ID")
	}
	coll, err := s.db.Collection(ctx)
	if err != nil {
		return err
	}
	_, err = coll.UpdateOne(
		ctx,
		bson.D{{Key: "_id", Value: order.ID}},
		bson.D{{Key: "$setOnInsert", Value: bson.D{
			{Key: "userId", Value: order.UserID},
			{Key: "total", Value: order.Total},
			{Key: "status", Value: "processed"},
			{Key: "processedAt", Value: time.Now().UTC()},
		}}},
		options.UpdateOne().SetUpsert(true),
	)
	return err
}

type sdkEventBridge struct {
	client *eventbridge.Client
	err    error // the SDK's configuration could not be loaded: every PutEvents says why
}

var eventBridge = newEventBridge()

func newEventBridge() *sdkEventBridge {
	cfg, err := config.LoadDefaultConfig(context.Background())
	if err != nil {
		return &sdkEventBridge{err: err}
	}
	return &sdkEventBridge{client: eventbridge.NewFromConfig(cfg)}
}

// PutEvents puts one event, {Source, DetailType, Detail}, on the default event bus; an entry the service
// did not take is an error (PutEvents answers 200 with the entry's ErrorCode then).
func (p *sdkEventBridge) PutEvents(ctx context.Context, event map[string]interface{}) error {
	if p.err != nil {
		return fmt.Errorf("loading the AWS SDK's configuration: %w", p.err)
	}
	detail, err := json.Marshal(event["Detail"])
	if err != nil {
		return err
	}
	out, err := p.client.PutEvents(ctx, &eventbridge.PutEventsInput{
		Entries: []types.PutEventsRequestEntry{{
			Source:     aws.String(fmt.Sprint(event["Source"])),
			DetailType: aws.String(fmt.Sprint(event["DetailType"])),
			Detail:     aws.String(string(detail)),
		}},
	})
	if err != nil {
		return err
	}
	if out.FailedEntryCount > 0 {
		entry := out.Entries[0]
		return fmt.Errorf("event not put: %s: %s", aws.ToString(entry.ErrorCode), aws.ToString(entry.ErrorMessage))
	}
	return nil
}
