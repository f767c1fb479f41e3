using System.Globalization;
using System.Security.Cryptography;

namespace Qed.Tests.Infrastructure;

/// <summary>
/// Seeds for randomised tests: a fresh one per run unless <c>QED_TEST_SEED</c> is set, always printed, so that a failure
/// seen once can be replayed with <c>QED_TEST_SEED=N scripts/test</c>.
/// </summary>
public static class TestSeed
{
    /// <summary>The environment variable that fixes the seed of every randomised test.</summary>
    public const string Variable = "QED_TEST_SEED";

    /// <summary>The seed for the test named <paramref name="test"/>: <c>QED_TEST_SEED</c> when set, else a random one; printed either way.</summary>
    /// <exception cref="InvalidOperationException"><c>QED_TEST_SEED</c> is set but is not a non-negative 32-bit integer.</exception>
    public static int For(string test)
    {
        string? text = Environment.GetEnvironmentVariable(Variable);
        int seed;
        if (string.IsNullOrEmpty(text))
        {
            seed = RandomNumberGenerator.GetInt32(int.MaxValue);
        }
        else if (!int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out seed))
        {
            throw new InvalidOperationException($"{Variable}='{text}' is not a non-negative 32-bit integer");
        }
        Report($"{test}: seed {seed} (reproduce with {Variable}={seed})");
        return seed;
    }

    /// <summary>Prints a line that belongs in the test log (seeds, counts of cases run): on the console and in the test's output.</summary>
    public static void Report(string line)
    {
        Console.Error.WriteLine(line);
        TestContext.Current.TestOutputHelper?.WriteLine(line);
    }
}
