"""The memory pathway's planning: closure, isolated vs shared items, cycles, multi-parent items."""

from lethe.agent.pathway import dependency_closure, has_outside_support, plan_forgetting, regeneration_order


def test_closure_follows_derivations_through_cycles():
    children = {1: {2}, 2: {3}, 3: {2, 4}}
    assert dependency_closure([1], children) == {1, 2, 3, 4}


def test_item_derived_only_from_target_is_deleted():
    # 1 = target record, 2 = fact from 1, 3 = summary of 2
    plan = plan_forgetting([1], [(2, 1), (3, 2)])
    assert plan.delete == [1, 2, 3] and plan.regenerate == []


def test_multi_parent_item_is_regenerated_not_deleted():
    # 1 = target record, 5 = other author's record, 2 = summary of both, 3 = note derived from 2 only
    plan = plan_forgetting([1], [(2, 1), (2, 5), (3, 2)])
    assert plan.delete == [1]
    assert plan.regenerate == [2, 3]  # 3 survives through 2's surviving source, after 2
    assert 5 not in plan.closure


def test_cycle_without_outside_support_is_deleted_whole():
    # 2 derived from the target and from 3; 3 derived from 2: nothing outside supports them
    plan = plan_forgetting([1], [(2, 1), (2, 3), (3, 2)])
    assert plan.delete == [1, 2, 3] and plan.regenerate == []


def test_cycle_with_outside_support_is_regenerated_in_a_valid_order():
    # 2 <- {1 target, 3, 9 outside}; 3 <- {2}
    plan = plan_forgetting([1], [(2, 1), (2, 3), (2, 9), (3, 2)])
    assert plan.delete == [1] and set(plan.regenerate) == {2, 3}
    assert plan.regenerate.index(2) < plan.regenerate.index(3) or plan.regenerate == [2, 3]


def test_outside_support_is_transitive_and_terminates_on_cycles():
    parents = {3: {2}, 2: {1, 3}}
    assert not has_outside_support(3, parents, {1, 2, 3})
    assert has_outside_support(3, {3: {2}, 2: {1, 7}}, {1, 2, 3})


def test_regeneration_order_puts_parents_first_and_breaks_cycles():
    assert regeneration_order({4, 5, 6}, {5: {4}, 6: {5}}) == [4, 5, 6]
    order = regeneration_order({7, 8}, {7: {8}, 8: {7}})
    assert sorted(order) == [7, 8]


def test_unrelated_items_are_untouched():
    plan = plan_forgetting([1], [(2, 1), (11, 10), (12, 11)])
    assert set(plan.closure) == {1, 2} and 10 not in plan.delete and 12 not in plan.regenerate
