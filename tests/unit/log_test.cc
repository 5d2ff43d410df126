#include "base/log.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace primaps {
namespace {

TEST(LogTest, LinesNameTheSeverityTheTimeAndTheProgram) {
  SetLogProgramName("primaps-test");
  EXPECT_THAT(FormatLogLine(LogSeverity::kInfo, "serving"),
              ::testing::MatchesRegex(
                  "I 20[0-9][0-9]-[01][0-9]-[0-3][0-9]T[0-2][0-9]:[0-5][0-9]:"
                  "[0-6][0-9]\\.[0-9][0-9][0-9]Z primaps-test: serving"));
  EXPECT_THAT(FormatLogLine(LogSeverity::kWarning, "x"),
              ::testing::StartsWith("W "));
  EXPECT_THAT(FormatLogLine(LogSeverity::kError, "x"),
              ::testing::StartsWith("E "));
}

}  // namespace
}  // namespace primaps
