package rig

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	kmstypes "github.com/aws/aws-sdk-go-v2/service/kms/types"
)

// CreateKeyEvent is the EventBridge event CloudTrail delivers for a CreateKey call that made key
// with these tags: the shape of events/kms/kms-createkey-cloudtrail.json, with this key's values.
func CreateKeyEvent(key *kmstypes.KeyMetadata, tags map[string]string, eventID string, at time.Time) []byte {
	var tagList []map[string]string
	for k, v := range tags {
		tagList = append(tagList, map[string]string{"tagKey": k, "tagValue": v})
	}
	region := regionOf(*key.Arn)
	event := map[string]any{
		"version": "0", "id": eventID, "detail-type": "AWS API Call via CloudTrail", "source": "aws.kms",
		"account": AWSAccount, "time": at.UTC().Format(time.RFC3339), "region": region, "resources": []string{},
		"detail": map[string]any{
			"eventVersion": "1.08",
			"userIdentity": map[string]any{"type": "IAMUser", "principalId": "EX_PRINCIPAL_ID", "arn": "arn:aws:iam::" + AWSAccount + ":user/platform-admin",
				"accountId": AWSAccount, "userName": "platform-admin"},
			"eventTime": at.UTC().Format(time.RFC3339), "eventSource": "kms.amazonaws.com", "eventName": "CreateKey",
			"awsRegion": region, "sourceIPAddress": "192.0.2.0", "userAgent": "aws-cli/2",
			"requestParameters": map[string]any{"description": "Databricks managed services key", "keyUsage": "ENCRYPT_DECRYPT",
				"keySpec": "SYMMETRIC_DEFAULT", "origin": "AWS_KMS", "bypassPolicyLockoutSafetyCheck": false, "tags": tagList},
			"responseElements": map[string]any{"keyMetadata": map[string]any{
				"aWSAccountId": AWSAccount, "keyId": *key.KeyId, "arn": *key.Arn,
				"creationDate": at.UTC().Format("Jan 2, 2006 3:04:05 PM"), "enabled": true, "keyUsage": "ENCRYPT_DECRYPT",
				"keyState": "Enabled", "origin": "AWS_KMS", "keyManager": "CUSTOMER", "keySpec": "SYMMETRIC_DEFAULT",
				"customerMasterKeySpec": "SYMMETRIC_DEFAULT", "encryptionAlgorithms": []string{"SYMMETRIC_DEFAULT"}, "multiRegion": false}},
			"requestID": "5f1c2a1e-0000-4000-8000-" + eventID[len(eventID)-12:], "eventID": eventID, "readOnly": false,
			"resources": []map[string]string{{"accountId": AWSAccount, "type": "AWS::KMS::Key", "ARN": *key.Arn}},
			"eventType": "AwsApiCall", "managementEvent": true, "recipientAccountId": AWSAccount, "eventCategory": "Management",
		},
	}
	out, err := json.MarshalIndent(event, "", "  ")
	if err != nil {
		panic(fmt.Sprintf("rig: marshalling a CreateKey event: %v", err)) // only plain maps and strings above
	}
	return out
}

func regionOf(arn string) string {
	// arn:<partition>:kms:<region>:<account>:key/<id>
	if parts := strings.Split(arn, ":"); len(parts) > 3 && parts[3] != "" {
		return parts[3]
	}
	return DefaultRegion
}
