#include "trainer/evaluation_json.h"

#include <gtest/gtest.h>

namespace primaps {
namespace {

TEST(ThetaMMiouTest, ReadsTheFigureAndNamesWhatIsWrong) {
  EXPECT_DOUBLE_EQ(
      *ThetaMMiou(std::string(R"({"theta_m":{"miou":12.5}})"), "best.json"),
      12.5);
  struct Case {
    const char* text;
    const char* says;
  };
  for (const Case& c : {
           Case{"{not json", "not valid JSON"},
           Case{"[1, 2]", "no \"theta_m\" object"},
           Case{R"({"theta_m": 3})", "no \"theta_m\" object"},
           Case{R"({"theta_m": {}})", "theta_m.miou is missing"},
           Case{R"({"theta_m": {"miou": "high"}})", "not a number"},
       }) {
    const absl::StatusOr<double> miou =
        ThetaMMiou(std::string(c.text), "run/best.json");
    ASSERT_FALSE(miou.ok()) << c.text;
    EXPECT_EQ(miou.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(miou.status().message().find("run/best.json"), std::string::npos);
    EXPECT_NE(miou.status().message().find(c.says), std::string::npos)
        << miou.status();
  }
}

}  // namespace
}  // namespace primaps
