// SPDX-License-Identifier: MPL-2.0

package main

// Billing beyond flat token prices, for the agent's cost (tests/e2e/43-pricing.sh):
//
//	websearch:  as normal, and Anthropic's usage reports server tools:
//	            server_tool_use {web_search_requests: mockWebSearches,
//	            web_fetch_requests: mockWebFetches} in a whole answer, and in a
//	            stream's message_start and message_delta (the whole answer's
//	            count, as Anthropic's). Web fetches cost only their tokens.
//	longprompt: as normal, with mockLongPrompt prompt tokens reported whatever
//	            the request held (every style's usage reads c.prompt), past
//	            the built-in long-context thresholds (200,000).
//	hugeusage:  as normal, with mockHugePrompt prompt tokens reported (a buggy
//	            provider's count): the agent bounds it by the model's window.
const (
	mockWebSearches = 3
	mockWebFetches  = 1
	mockLongPrompt  = 250000
	mockHugePrompt  = 99999999999999999
)

// serverToolUse is an Anthropic usage's server_tool_use for the websearch scenario.
func serverToolUse() map[string]int {
	return map[string]int{"web_search_requests": mockWebSearches,
		"web_fetch_requests": mockWebFetches}
}
