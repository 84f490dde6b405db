// Package store opens the MongoDB collection a function uses, from the settings kfaas gives it.
package store

import (
	"context"
	"fmt"
	"os"
	"sync"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// DB is one collection, connected on first use and kept for the process (one client per runtime process).
type DB struct {
	fallback string
	once     sync.Once
	coll     *mongo.Collection
	err      error
}

// FromEnv names the collection TABLE_NAME, or fallback when it is unset.
func FromEnv(fallback string) *DB { return &DB{fallback: fallback} }

// Collection connects once; a failure to connect is returned to every call.
func (d *DB) Collection(ctx context.Context) (*mongo.Collection, error) {
	d.once.Do(func() {
		url := os.Getenv("MONGODB_URL")
		if url == "" {
			d.err = fmt.Errorf("MongoDB is not configured: set MONGODB_URL")
			return
		}
		opts := options.Client().ApplyURI(url).SetServerSelectionTimeout(2 * time.Second).SetTimeout(4 * time.Second)
		client, err := mongo.Connect(opts)
		if err != nil {
			d.err = err
			return
		}
		database := os.Getenv("MONGODB_DATABASE")
		if database == "" {
			database = "kfaas"
		}
		name := os.Getenv("TABLE_NAME")
		if name == "" {
			name = d.fallback
		}
		d.coll = client.Database(database).Collection(name)
	})
	return d.coll, d.err
}

// DocumentID is the _id to look up: an ObjectID for 24 hex digits (as kfaas's create-user stores users),
// else the string itself.
func DocumentID(id string) any {
	if oid, err := bson.ObjectIDFromHex(id); err == nil {
		return oid
	}
	return id
}
