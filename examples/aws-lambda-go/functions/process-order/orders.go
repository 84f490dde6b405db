package main

// The orderService and eventBridge the seed's ProcessOrder calls: the order stored once in MongoDB (the
// collection TABLE_NAME, default orders), and its event sent to the broker as a CloudEvent (K_SINK, which
// kfaas sets for a function that publishes): type = DetailType, source = Source, data = Detail.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"time"

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

type sinkPublisher struct{ client *http.Client }

var eventBridge = &sinkPublisher{client: &http.Client{Timeout: 10 * time.Second}}

// PutEvents sends one event, {Source, DetailType, Detail}, to the broker in CloudEvents binary mode.
func (p *sinkPublisher) PutEvents(ctx context.Context, event map[string]interface{}) error {
	sink := os.Getenv("K_SINK")
	if sink == "" {
		return fmt.Errorf("no event sink: set K_SINK (kfaas sets it for a function with publishes: true)")
	}
	detail, err := json.Marshal(event["Detail"])
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, sink, bytes.NewReader(detail))
	if err != nil {
		return err
	}
	id := fmt.Sprintf("%v-%v", event["DetailType"], time.Now().UnixNano())
	if d, ok := event["Detail"].(map[string]interface{}); ok && d["orderId"] != nil {
		id = fmt.Sprintf("%v-%v", event["DetailType"], d["orderId"])
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Ce-Specversion", "1.0")
	req.Header.Set("Ce-Id", id)
	req.Header.Set("Ce-Source", fmt.Sprint(event["Source"]))
	req.Header.Set("Ce-Type", fmt.Sprint(event["DetailType"]))
	resp, err := p.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		return fmt.Errorf("the broker refused the event: %s", resp.Status)
	}
	return nil
}
