-- Closed manual reviews. A review is open exactly while its payment is 'in_review' (the payment row
-- is the open review, so opening one writes nothing here); closing it writes this row in the same
-- transaction that moves the payment out of review. The id is derived from the payment's
-- (pay_X -> rev_X), so one payment has at most one review.
CREATE TABLE reviews (
    id           text PRIMARY KEY,
    merchant_id  text NOT NULL REFERENCES merchants(id),
    payment_id   text NOT NULL UNIQUE REFERENCES payments(id),
    status       text NOT NULL CHECK (status IN ('approved', 'rejected')),
    reason       text NOT NULL,
    -- The fired rules that sent the payment to review, as on the payment's risk object.
    rules        jsonb NOT NULL,
    -- The payment's created time: the review opened when the payment was written.
    created      bigint NOT NULL,
    closed       bigint NOT NULL,
    -- Who decided, as the merchant's request named them (an analyst), when it did.
    closed_by    text
);
CREATE INDEX reviews_merchant_status_created ON reviews (merchant_id, status, created DESC, id DESC);
CREATE INDEX reviews_merchant_created ON reviews (merchant_id, created DESC, id DESC);
-- Open reviews are listed from the payments in review.
CREATE INDEX payments_in_review ON payments (merchant_id, created DESC, id DESC) WHERE status = 'in_review';
