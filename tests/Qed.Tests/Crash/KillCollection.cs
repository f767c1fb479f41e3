namespace Qed.Tests.Crash;

/// <summary>The tests that kill processes run one after another: on two cores, side by side they would starve each other's victims and pollers.</summary>
[CollectionDefinition(Name)]
public sealed class KillCollection
{
    /// <summary>The collection's name.</summary>
    public const string Name = "kill tests";
}
