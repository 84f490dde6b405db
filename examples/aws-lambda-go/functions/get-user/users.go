package main

// The userService the seed's GetUser calls, on MongoDB (the seed's DynamoDB table): the collection named by
// TABLE_NAME (the seed's template sets it; default users) in MONGODB_DATABASE at MONGODB_URL, the
// variables kfaas gives a function that uses MongoDB.

import (
	"context"
	"errors"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"kfaas.example/aws-lambda-go/internal/store"
)

// User is one stored user.
type User struct {
	ID    string
	Email string
	Name  string
}

type mongoUsers struct{ db *store.DB }

var userService = &mongoUsers{db: store.FromEnv("users")}

// GetByID returns the user with this id, nil when there is none, or the error of the store.
func (s *mongoUsers) GetByID(ctx context.Context, id string) (*User, error) {
	coll, err := s.db.Collection(ctx)
	if err != nil {
		return nil, err
	}
	var doc struct {
		ID    any    `bson:"_id"`
		Email string `bson:"email"`
		Name  string `bson:"name"`
	}
	err = coll.FindOne(ctx, bson.D{{Key: "_id", Value: store.DocumentID(id)}}).Decode(&doc)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return &User{ID: id, Email: doc.Email, Name: doc.Name}, nil
}
