"""IB partner portal: referral code and QR code, the IB's clients and their trading accounts."""
