CREATE TABLE "users" (
	"id" text PRIMARY KEY NOT NULL,
	"username" text NOT NULL,
	"username_canonical" text NOT NULL,
	"password_hash" text NOT NULL,
	"created_at" timestamp (3) with time zone DEFAULT now() NOT NULL,
	"password_updated_at" timestamp (3) with time zone
);
--> statement-breakpoint
CREATE UNIQUE INDEX "users_username_canonical_unique" ON "users" USING btree ("username_canonical");